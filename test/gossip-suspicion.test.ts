// Lifeguard suspicion: the timeout curve, and a timer that confirmations from other members shorten.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Awareness } from '../membership/awareness.js';
import { remainingSuspicionMs, Suspicion, suspicionTimeoutMs } from '../membership/suspicion.js';
import { waitFor } from './helpers/wait-for.js';

test('the suspicion timeout falls on a log curve from max to min as confirmations arrive', () => {
  const [min, max] = [2000, 30_000];
  assert.equal(remainingSuspicionMs(0, 3, 0, min, max), 30_000);
  assert.equal(remainingSuspicionMs(1, 3, 0, min, max), 16_000);
  assert.equal(remainingSuspicionMs(2, 3, 0, min, max), 7810);
  assert.equal(remainingSuspicionMs(3, 3, 0, min, max), 2000);
  assert.equal(remainingSuspicionMs(4, 3, 0, min, max), 2000);
  assert.equal(remainingSuspicionMs(2, 3, 5000, min, max), 2810, 'time already spent suspecting counts');
  assert.equal(remainingSuspicionMs(0, 0, 0, min, max), 2000, 'nobody to wait for: the minimum');
});

test('the base timeout grows with log10 of the pool size, never below one multiple', () => {
  assert.equal(suspicionTimeoutMs(4, 1, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 10, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 100, 1000), 8000);
  assert.equal(suspicionTimeoutMs(4, 1000, 200), 2400);
});

test('confirmations from distinct members shorten a running suspicion; repeats and the accuser do not count', async () => {
  let fired: number | undefined;
  const s = new Suspicion('a', 2, 50, 60_000, (c) => { fired = c; });
  assert.equal(s.confirm('a'), false, 'the accuser is not a confirmation');
  assert.equal(s.confirm('b'), true);
  assert.equal(s.confirm('b'), false, 'one member confirms once');
  assert.equal(s.confirm('c'), true);
  assert.equal(s.confirm('d'), false, 'k reached: nothing more to count');
  await waitFor(() => assert.equal(fired, 2), 5000);
});

test('without confirmations to wait for the timer runs for the minimum; cancel stops it', async () => {
  let fired = 0;
  new Suspicion('a', 0, 20, 60_000, () => { fired++; });
  const cancelled = new Suspicion('a', 0, 20, 60_000, () => { fired += 100; });
  cancelled.cancel();
  await waitFor(() => assert.equal(fired, 1), 5000);
});

test('awareness stays within [0, max-1] and scales timeouts by score + 1', () => {
  const a = new Awareness(8);
  a.apply(-1);
  assert.equal(a.health, 0);
  a.apply(3);
  assert.equal(a.scale(500), 2000);
  a.apply(100);
  assert.equal(a.health, 7);
  assert.equal(a.scale(1000), 8000);
});

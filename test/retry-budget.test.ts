// The retry budget (dataplane/http/retry-budget.ts): a fifth of a retry per request, a floor of 10 retries a second, a cap on saved-up credit.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { RetryBudget } from '../dataplane/http/retry-budget.js';

/** The module's constants, as its comments state them. */
const RATIO = 0.2;
const PER_SECOND = 10;
const CAP = RATIO * 500 + PER_SECOND * 10; // 200
const START = CAP / 2; // 100

/** Withdraws until the budget says no; how many retries it allowed. */
function drain(b: RetryBudget): number {
  let n = 0;
  while (b.withdraw()) {
    n++;
    if (n > 1_000_000) throw new Error('the budget never ran out');
  }
  return n;
}

/** The most the time-based floor can have added between two instants (ms). */
const refillBound = (fromMs: number, toMs: number) => ((toMs - fromMs) / 1000) * PER_SECOND;

test('a new budget allows a burst of half its cap in retries, then refuses', () => {
  const t0 = Date.now();
  const b = new RetryBudget();
  const n = drain(b);
  const t1 = Date.now();
  assert.ok(n >= START - 1, `at least ${START - 1} retries from the start, got ${n}`);
  assert.ok(n <= START + refillBound(t0, t1), `no more than the start plus the floor's refill, got ${n}`);
  assert.equal(b.withdraw(), false, 'and keeps refusing while nothing is deposited');
});

test('a refused withdrawal costs nothing: five requests then pay for exactly one more retry', () => {
  const b = new RetryBudget();
  drain(b);
  for (let i = 0; i < 10; i++) assert.equal(b.withdraw(), false);
  for (let i = 0; i < 5; i++) b.deposit(); // 5 × 0.2 = 1 retry, on top of the fraction left
  assert.equal(b.withdraw(), true, 'five requests earn one retry');
});

test('retries never multiply load: N requests pay for about N/5 retries beyond the start', () => {
  const t0 = Date.now();
  const b = new RetryBudget();
  const start = drain(b);
  let allowed = 0;
  const requests = 1000;
  for (let i = 0; i < requests; i++) {
    b.deposit();
    // Every request's attempt fails and wants a retry (the worst case).
    if (b.withdraw()) allowed++;
  }
  allowed += drain(b);
  const t1 = Date.now();
  const total = start + allowed;
  const earned = START + requests * RATIO;
  assert.ok(total >= earned - 1, `at least ${earned - 1} retries in all, got ${total}`);
  assert.ok(total <= earned + refillBound(t0, t1) + 1e-9, `at most ${earned} plus the floor's refill, got ${total}`);
  assert.ok(allowed < requests * 0.25, 'far fewer retries than requests');
});

test('saved-up credit is capped: a long burst of requests does not pay for unlimited retries later', () => {
  const t0 = Date.now();
  const b = new RetryBudget();
  for (let i = 0; i < 100_000; i++) b.deposit(); // 20 000 retries' worth without the cap
  const n = drain(b);
  const t1 = Date.now();
  assert.ok(n >= CAP - 1, `the cap is reached, got ${n}`);
  assert.ok(n <= CAP + refillBound(t0, t1), `and not passed, got ${n}`);
});

test('with no requests at all, a floor of retries per second refills over time', async () => {
  const b = new RetryBudget();
  drain(b);
  const t0 = Date.now();
  await sleep(350);
  const t1 = Date.now();
  const n = drain(b);
  const t2 = Date.now();
  const least = Math.floor(refillBound(t0, t1));
  assert.ok(n >= least, `at least ${least} retries refilled after ${t1 - t0} ms, got ${n}`);
  // The budget's own clock started at the last refused withdrawal (just before t0) and ran to the last call (before t2).
  assert.ok(n <= refillBound(t0 - 5, t2) + 1, `no more than the floor's rate allows, got ${n}`);
});

test('budgets are independent of each other', () => {
  const a = new RetryBudget();
  const b = new RetryBudget();
  drain(a);
  assert.equal(a.withdraw(), false);
  assert.equal(b.withdraw(), true, 'draining one budget leaves another untouched');
});

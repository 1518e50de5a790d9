// Per-instance circuit breaking (dataplane/balance/instance-gate.ts): MaxConnections in flight, MaxPendingRequests waiting (503 past it), waits bounded by the deadline (504), slots handed on in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { InstanceGates } from '../dataplane/balance/instance-gate.js';
import { ProxyAnswer } from '../dataplane/http/proxy-answer.js';

/** Long enough that no waiter in these tests times out unless it is meant to (every such waiter gets its slot). */
const LONG = 60_000;
/** For waiters a test leaves waiting: they time out soon after, so no timer outlives the test. */
const STRANDED = 300;

/** Lets queued promise callbacks run. */
const settle = async () => { for (let i = 0; i < 3; i++) await tick(); };

/** A pending acquire whose outcome the test can look at without awaiting it. */
function track<T>(p: Promise<T>): { p: Promise<T>; state: () => 'pending' | 'ok' | 'failed'; value: () => T; error: () => unknown } {
  let st: 'pending' | 'ok' | 'failed' = 'pending';
  let v: T | undefined;
  let err: unknown;
  p.then((x) => { st = 'ok'; v = x; }, (e) => { st = 'failed'; err = e; });
  return { p, state: () => st, value: () => v as T, error: () => err };
}

const isAnswer = (status: number, code: string) => (e: unknown) => e instanceof ProxyAnswer && e.status === status && e.code === code;

test('MaxConnections 0 means no limit: every acquire goes at once and release is a no-op', async () => {
  const g = new InstanceGates();
  const releases = await Promise.all(Array.from({ length: 1000 }, () => g.acquire('i1', 0, 1, 10)));
  for (const r of releases) { r(); r(); }
  const more = track(g.acquire('i1', 0, 1, 10));
  await settle();
  assert.equal(more.state(), 'ok');
});

test('up to MaxConnections requests go at once; the next waits until one is released', async () => {
  const g = new InstanceGates();
  const r1 = await g.acquire('i1', 2, 0, LONG);
  await g.acquire('i1', 2, 0, LONG);
  const third = track(g.acquire('i1', 2, 0, LONG));
  await settle();
  assert.equal(third.state(), 'pending', 'the third waits for a slot');
  r1();
  await settle();
  assert.equal(third.state(), 'ok', 'and takes the released slot');
});

test('a released slot passes to waiters in arrival order', async () => {
  const g = new InstanceGates();
  const first = await g.acquire('i1', 1, 0, LONG);
  const order: number[] = [];
  const waiters = [1, 2, 3].map((n) => g.acquire('i1', 1, 0, LONG).then((release) => { order.push(n); return release; }));
  await settle();
  assert.deepEqual(order, []);
  first();
  await settle();
  assert.deepEqual(order, [1]);
  (await waiters[0])();
  await settle();
  assert.deepEqual(order, [1, 2]);
  (await waiters[1])();
  await settle();
  assert.deepEqual(order, [1, 2, 3]);
});

test('past MaxPendingRequests waiters, a request is shed at once with 503 UPSTREAM_OVERFLOW', async () => {
  const g = new InstanceGates();
  await g.acquire('i1', 1, 2, LONG);
  const w1 = track(g.acquire('i1', 1, 2, STRANDED));
  const w2 = track(g.acquire('i1', 1, 2, STRANDED));
  await assert.rejects(g.acquire('i1', 1, 2, LONG), isAnswer(503, 'UPSTREAM_OVERFLOW'));
  await assert.rejects(g.acquire('i1', 1, 2, LONG), /MaxPendingRequests 2/);
  await settle();
  assert.equal(w1.state(), 'pending', 'those already waiting keep waiting');
  assert.equal(w2.state(), 'pending');
  await assert.rejects(w1.p, isAnswer(504, 'UPSTREAM_TIMEOUT'));
  await assert.rejects(w2.p, isAnswer(504, 'UPSTREAM_TIMEOUT'));
});

test('MaxPendingRequests 0 puts no cap on waiters', async () => {
  const g = new InstanceGates();
  const release = await g.acquire('i1', 1, 0, LONG);
  const waiters = Array.from({ length: 200 }, () => track(g.acquire('i1', 1, 0, STRANDED)));
  await settle();
  assert.ok(waiters.every((w) => w.state() === 'pending'), 'none shed');
  release();
  await settle();
  assert.equal(waiters.filter((w) => w.state() === 'ok').length, 1, 'one slot, one waiter through');
  await Promise.allSettled(waiters.map((w) => w.p));
  assert.equal(waiters.filter((w) => w.state() === 'failed').length, 199, 'the rest time out');
});

test('a waiter that waits past its timeout gets 504 UPSTREAM_TIMEOUT', async () => {
  const g = new InstanceGates();
  await g.acquire('i1', 1, 0, LONG);
  await assert.rejects(g.acquire('i1', 1, 0, 20), isAnswer(504, 'UPSTREAM_TIMEOUT'));
});

test('a timed-out waiter neither counts as pending nor takes a released slot', async () => {
  const g = new InstanceGates();
  const holder = await g.acquire('i1', 1, 1, LONG);
  await assert.rejects(g.acquire('i1', 1, 1, 10), isAnswer(504, 'UPSTREAM_TIMEOUT'));
  // The gone waiter no longer fills the one pending place.
  const next = track(g.acquire('i1', 1, 1, LONG));
  await settle();
  assert.equal(next.state(), 'pending', 'a new waiter is queued, not shed');
  holder();
  await settle();
  assert.equal(next.state(), 'ok', 'the slot skips the gone waiter and goes to the live one');
});

test('with only gone waiters left, a release frees the slot for the next caller', async () => {
  const g = new InstanceGates();
  const holder = await g.acquire('i1', 1, 0, LONG);
  await assert.rejects(g.acquire('i1', 1, 0, 5));
  await assert.rejects(g.acquire('i1', 1, 0, 5));
  holder();
  const now = track(g.acquire('i1', 1, 0, LONG));
  await settle();
  assert.equal(now.state(), 'ok');
});

test('releasing twice frees only one slot', async () => {
  const g = new InstanceGates();
  const r = await g.acquire('i1', 1, 0, LONG);
  r();
  r();
  await g.acquire('i1', 1, 0, LONG);
  const second = track(g.acquire('i1', 1, 0, STRANDED));
  await settle();
  assert.equal(second.state(), 'pending', 'the double release did not make room for two');
  await assert.rejects(second.p, isAnswer(504, 'UPSTREAM_TIMEOUT'));
});

test('a slot handed to a waiter stays taken: the waiter\'s release is what frees it', async () => {
  const g = new InstanceGates();
  const r1 = await g.acquire('i1', 1, 0, LONG);
  const w = track(g.acquire('i1', 1, 0, LONG));
  r1();
  await settle();
  assert.equal(w.state(), 'ok');
  const third = track(g.acquire('i1', 1, 0, LONG));
  await settle();
  assert.equal(third.state(), 'pending', 'still one in flight');
  w.value()();
  await settle();
  assert.equal(third.state(), 'ok');
});

test('instances are gated separately', async () => {
  const g = new InstanceGates();
  await g.acquire('a', 1, 1, LONG);
  const b = track(g.acquire('b', 1, 1, LONG));
  await settle();
  assert.equal(b.state(), 'ok', 'a full instance does not hold up another');
});

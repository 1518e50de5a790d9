// Passive outlier detection (dataplane/balance/outlier-detection.ts): consecutive failures eject an instance for a back-off that grows per ejection, capped, never more than half a target's instances.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutlierDetector, type OutlierSettings } from '../dataplane/balance/outlier-detection.js';

const settings = (over: Partial<OutlierSettings> = {}): OutlierSettings => ({ maxFailures: 5, baseEjectionMs: 30_000, disabled: false, ...over });

/** A detector that records every ejection it announces. */
function detector(): { d: OutlierDetector; ejections: [string, number][] } {
  const ejections: [string, number][] = [];
  return { d: new OutlierDetector((key, forMs) => ejections.push([key, forMs])), ejections };
}

test('an instance is ejected on its maxFailures-th consecutive failure, not before', () => {
  const { d, ejections } = detector();
  for (let i = 1; i < 5; i++) {
    d.failure('i1', 10, 0, settings());
    assert.equal(d.ejected('i1'), false, `not after ${i} failures`);
  }
  d.failure('i1', 10, 0, settings());
  assert.equal(d.ejected('i1'), true);
  assert.deepEqual(ejections, [['i1', 30_000]], 'the first ejection lasts the base ejection time');
});

test('a success resets the count: failures must be consecutive', () => {
  const { d } = detector();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 4; i++) d.failure('i1', 10, 0, settings());
    d.success('i1');
  }
  assert.equal(d.ejected('i1'), false, '12 failures, never 5 in a row');
  for (let i = 0; i < 5; i++) d.failure('i1', 10, 0, settings());
  assert.equal(d.ejected('i1'), true);
});

test('unknown instances are never ejected, and a success on one is harmless', () => {
  const { d, ejections } = detector();
  assert.equal(d.ejected('never-seen'), false);
  d.success('never-seen');
  assert.equal(d.ejected('never-seen'), false);
  assert.deepEqual(ejections, []);
});

test('instances are counted separately', () => {
  const { d } = detector();
  for (let i = 0; i < 3; i++) { d.failure('a', 10, 0, settings()); d.failure('b', 10, 0, settings()); }
  d.success('b');
  d.failure('a', 10, 0, settings());
  d.failure('a', 10, 0, settings());
  assert.equal(d.ejected('a'), true);
  assert.equal(d.ejected('b'), false);
});

test('maxFailures 1 ejects on the first failure', () => {
  const { d } = detector();
  d.failure('i1', 4, 0, settings({ maxFailures: 1 }));
  assert.equal(d.ejected('i1'), true);
});

test('disabled detection neither ejects nor counts the failures it sees', () => {
  const { d, ejections } = detector();
  for (let i = 0; i < 50; i++) d.failure('i1', 10, 0, settings({ disabled: true }));
  assert.equal(d.ejected('i1'), false);
  assert.deepEqual(ejections, []);
  for (let i = 0; i < 4; i++) d.failure('i1', 10, 0, settings());
  assert.equal(d.ejected('i1'), false, 'failures seen while disabled do not count once enabled');
});

test('never more than half of a target\'s instances are ejected at once', () => {
  const { d } = detector();
  // 4 instances, 2 already ejected: a third would leave too little.
  for (let i = 0; i < 5; i++) d.failure('c', 4, 2, settings());
  assert.equal(d.ejected('c'), false);
  // 5 instances: floor(2.5) = 2 may be out.
  for (let i = 0; i < 5; i++) d.failure('e', 5, 2, settings());
  assert.equal(d.ejected('e'), false);
  for (let i = 0; i < 5; i++) d.failure('f', 5, 1, settings());
  assert.equal(d.ejected('f'), true);
});

test('at least one instance may always be ejected, even of a target with one or two instances (as Envoy)', () => {
  const { d } = detector();
  for (let i = 0; i < 5; i++) d.failure('only', 1, 0, settings());
  assert.equal(d.ejected('only'), true, 'a lone instance can be ejected (the picker falls back to ejected ones)');
  for (let i = 0; i < 5; i++) d.failure('pair-b', 2, 1, settings());
  assert.equal(d.ejected('pair-b'), false, 'but not a second one of two');
});

test('an ejection held back by the cap happens on the next failure once there is room', () => {
  const { d, ejections } = detector();
  for (let i = 0; i < 5; i++) d.failure('i1', 2, 1, settings());
  assert.equal(d.ejected('i1'), false);
  d.failure('i1', 2, 0, settings()); // the other instance came back
  assert.equal(d.ejected('i1'), true, 'the failures counted while held back still count');
  assert.deepEqual(ejections, [['i1', 30_000]]);
});

test('an ejection ends after its back-off, and each later ejection lasts longer (base × ejections)', async () => {
  const { d, ejections } = detector();
  const s = settings({ maxFailures: 2, baseEjectionMs: 40 });
  for (let round = 1; round <= 3; round++) {
    d.failure('i1', 10, 0, s);
    d.failure('i1', 10, 0, s);
    assert.equal(d.ejected('i1'), true, `ejected, round ${round}`);
    await sleep(40 * round + 30);
    assert.equal(d.ejected('i1'), false, `back after its back-off, round ${round}`);
  }
  assert.deepEqual(ejections.map(([, ms]) => ms), [40, 80, 120]);
});

test('failures while ejected do not eject again or extend the ejection', () => {
  const { d, ejections } = detector();
  const s = settings({ maxFailures: 1, baseEjectionMs: 60_000 });
  d.failure('i1', 10, 0, s);
  for (let i = 0; i < 20; i++) d.failure('i1', 10, 0, s);
  assert.deepEqual(ejections, [['i1', 60_000]], 'one ejection announced');
});

test('the ejection back-off is capped at 5 minutes', () => {
  const { d, ejections } = detector();
  d.failure('i1', 10, 0, settings({ maxFailures: 1, baseEjectionMs: 3_600_000 }));
  assert.deepEqual(ejections, [['i1', 300_000]]);
  assert.equal(d.ejected('i1'), true);
});

test('a detector without an ejection listener still ejects', () => {
  const d = new OutlierDetector();
  for (let i = 0; i < 5; i++) d.failure('i1', 10, 0, settings());
  assert.equal(d.ejected('i1'), true);
});

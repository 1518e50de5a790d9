// Hybrid logical clocks (catalog/hlc.ts): compareHlc's total order and HybridClock's monotonic tick/observe, driven by an injected wall clock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HybridClock, compareHlc, type Hlc } from '../catalog/hlc.js';

const h = (wall: number, logical: number, node: string): Hlc => ({ wall, logical, node });

/** A wall clock the test moves by hand. */
function manualClock(start = 1000): { now: () => number; set: (t: number) => void } {
  let t = start;
  return { now: () => t, set: (v) => { t = v; } };
}

test('compareHlc orders by wall time first, then logical counter, then node name', () => {
  assert.ok(compareHlc(h(1, 9, 'z'), h(2, 0, 'a')) < 0, 'an earlier wall time loses whatever its counter and node');
  assert.ok(compareHlc(h(2, 0, 'a'), h(1, 9, 'z')) > 0);
  assert.ok(compareHlc(h(5, 1, 'z'), h(5, 2, 'a')) < 0, 'same wall: the logical counter decides');
  assert.ok(compareHlc(h(5, 2, 'a'), h(5, 1, 'z')) > 0);
  assert.ok(compareHlc(h(5, 2, 'a'), h(5, 2, 'b')) < 0, 'same wall and counter: the node name breaks the tie');
  assert.ok(compareHlc(h(5, 2, 'b'), h(5, 2, 'a')) > 0);
  assert.equal(compareHlc(h(5, 2, 'a'), h(5, 2, 'a')), 0, 'only an identical timestamp compares equal');
});

test('compareHlc is a consistent total order: antisymmetric and transitive over a mixed set', () => {
  const all: Hlc[] = [];
  for (const wall of [0, 1, 1_700_000_000_000]) for (const logical of [0, 1, 7]) for (const node of ['', 'a', 'agent-1', 'agent-10', 'agent-2', 'B']) all.push(h(wall, logical, node));
  const sorted = [...all].sort(compareHlc);
  // Every earlier element of the sorted list compares below every later one: the order is transitive, and no two
  // distinct timestamps compare equal.
  for (let i = 0; i < sorted.length; i++) for (let j = i + 1; j < sorted.length; j++) assert.ok(compareHlc(sorted[i], sorted[j]) < 0, `${i} < ${j}`);
  for (const a of all) for (const b of all) assert.equal(Math.sign(compareHlc(a, b)) + Math.sign(compareHlc(b, a)), 0);
});

test('tick stamps the wall clock and the clock node; a new millisecond restarts the logical counter', () => {
  const c = manualClock(1000);
  const clock = new HybridClock('n1', c.now);
  assert.equal(clock.node, 'n1');
  assert.deepEqual(clock.tick(), h(1000, 0, 'n1'));
  c.set(1500);
  assert.deepEqual(clock.tick(), h(1500, 0, 'n1'));
});

test('ticks within one millisecond are told apart by the logical counter', () => {
  const c = manualClock(2000);
  const clock = new HybridClock('n1', c.now);
  const stamps = Array.from({ length: 5 }, () => clock.tick());
  assert.deepEqual(stamps.map((s) => s.logical), [0, 1, 2, 3, 4]);
  assert.ok(stamps.every((s) => s.wall === 2000), 'all in the same millisecond');
});

test('a wall clock that steps backwards never makes tick go backwards', () => {
  const c = manualClock(10_000);
  const clock = new HybridClock('n1', c.now);
  const a = clock.tick();
  c.set(9_000); // NTP stepped the clock back a second
  const b = clock.tick();
  const d = clock.tick();
  assert.ok(compareHlc(a, b) < 0 && compareHlc(b, d) < 0, 'still increasing');
  assert.deepEqual(b, h(10_000, 1, 'n1'), 'the clock holds the last wall time and counts on');
  c.set(10_001);
  assert.deepEqual(clock.tick(), h(10_001, 0, 'n1'), 'and takes the wall clock again once it has caught up');
});

test('a clock starting at wall time 0 still issues increasing timestamps', () => {
  const clock = new HybridClock('n0', () => 0);
  const a = clock.tick();
  const b = clock.tick();
  assert.ok(compareHlc(a, b) < 0, 'increasing');
  assert.equal(a.wall, 0);
});

test('observe moves the clock past a timestamp seen from elsewhere, even one ahead of our wall clock', () => {
  const c = manualClock(1000);
  const clock = new HybridClock('local', c.now);
  clock.tick();
  const remote = h(5000, 3, 'remote');
  clock.observe(remote);
  const next = clock.tick();
  assert.ok(compareHlc(next, remote) > 0, 'the next write wins over what was seen');
  assert.deepEqual(next, h(5000, 4, 'local'), 'and carries our own node');
});

test('observe of the same wall and counter from another node still ticks past it, whatever the node names', () => {
  for (const [mine, theirs] of [['a', 'z'], ['z', 'a']]) {
    const clock = new HybridClock(mine, () => 7000);
    clock.tick(); // 7000/0
    clock.tick(); // 7000/1
    const seen = h(7000, 1, theirs);
    clock.observe(seen);
    assert.ok(compareHlc(clock.tick(), seen) > 0, `${mine} after seeing ${theirs}`);
  }
});

test('observe of an older timestamp changes nothing', () => {
  const c = manualClock(8000);
  const clock = new HybridClock('n1', c.now);
  clock.tick(); // 8000/0
  clock.observe(h(100, 50, 'old'));
  clock.observe(h(8000, 0, 'same-ms-not-newer'));
  assert.deepEqual(clock.tick(), h(8000, 1, 'n1'));
});

test('tick is greater than every timestamp issued or seen, with a jittery wall clock and random observations', () => {
  let seed = 42;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  let wall = 1_000_000;
  const clock = new HybridClock('me', () => wall);
  let highest: Hlc | undefined;
  for (let i = 0; i < 2000; i++) {
    wall += Math.floor(rnd() * 5) - 2; // steps back and forth by up to 2 ms
    if (rnd() < 0.3) {
      const seen = h(wall + Math.floor(rnd() * 10) - 5, Math.floor(rnd() * 4), rnd() < 0.5 ? 'aa' : 'zz');
      clock.observe(seen);
      if (!highest || compareHlc(seen, highest) > 0) highest = seen;
    } else {
      const t = clock.tick();
      if (highest) assert.ok(compareHlc(t, highest) > 0, `tick ${JSON.stringify(t)} after ${JSON.stringify(highest)}`);
      highest = t;
    }
  }
});

test('without an injected clock, tick follows Date.now', () => {
  const before = Date.now();
  const t = new HybridClock('real').tick();
  const after = Date.now();
  assert.ok(t.wall >= before && t.wall <= after, 'the wall time is Date.now');
  assert.equal(t.logical, 0);
});

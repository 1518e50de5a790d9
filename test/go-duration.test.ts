// Go duration strings: parsing and printing match Go's time.Duration, errors carry Go's texts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatGoDuration, parseGoDuration } from '../lib/go-duration.js';

test('parses Go durations to milliseconds', () => {
  const cases: [string, number][] = [['10s', 10_000], ['1m30s', 90_000], ['250ms', 250], ['1.5h', 5_400_000], ['0', 0], ['72h', 259_200_000], ['1us', 0.001], ['-2s', -2000], ['1h2m3s4ms', 3_723_004]];
  for (const [s, ms] of cases) assert.equal(parseGoDuration(s), ms, s);
});

test('prints like Go', () => {
  const cases: [number, string][] = [[0, '0s'], [10_000, '10s'], [90_000, '1m30s'], [250, '250ms'], [5_400_000, '1h30m0s'], [1500, '1.5s'], [259_200_000, '72h0m0s']];
  for (const [ms, s] of cases) assert.equal(formatGoDuration(ms), s, String(ms));
});

test('rejects bad input with Go\'s messages', () => {
  assert.throws(() => parseGoDuration('abc'), { message: 'time: invalid duration "abc"' });
  assert.throws(() => parseGoDuration('10'), { message: 'time: missing unit in duration "10"' });
  assert.throws(() => parseGoDuration(''), { message: 'time: invalid duration ""' });
  assert.throws(() => parseGoDuration('5x'), { message: 'time: unknown unit "x" in duration "5x"' });
  assert.throws(() => parseGoDuration('.s'), /invalid duration/);
});

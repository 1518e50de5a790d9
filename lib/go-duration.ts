// Go's time.Duration text format: parse ("1m30s", "250ms") and print, with Go's error texts.

import { NodemeshError } from './errors.js';

const UNITS: Record<string, number> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};

/** Parses a Go duration string into milliseconds; throws Go's message on bad input (code DURATION_INVALID). */
export function parseGoDuration(text: string): number {
  const bad = () => new NodemeshError('DURATION_INVALID', `time: invalid duration ${JSON.stringify(text)}`, 400);
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw bad();
  let total = 0;
  while (s.length > 0) {
    const num = /^(\d*)(?:\.(\d*))?/.exec(s);
    if (!num || (num[1] === '' && (num[2] === undefined || num[2] === ''))) throw bad();
    s = s.slice(num[0].length);
    const unit = /^[^\d.]+/.exec(s)?.[0];
    if (!unit) throw new NodemeshError('DURATION_INVALID', `time: missing unit in duration ${JSON.stringify(text)}`, 400);
    const mult = UNITS[unit];
    if (mult === undefined) throw new NodemeshError('DURATION_INVALID', `time: unknown unit ${JSON.stringify(unit)} in duration ${JSON.stringify(text)}`, 400);
    s = s.slice(unit.length);
    total += Number(`${num[1] || '0'}.${num[2] || '0'}`) * mult;
  }
  return sign * total;
}

/** Prints milliseconds the way Go prints a time.Duration ("1h2m3s", "1.5s", "250ms", "0s"). */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  let out: string;
  if (rest < 1000) {
    out = rest >= 1 ? `${trim(rest)}ms` : rest >= 1e-3 ? `${trim(rest * 1e3)}µs` : `${trim(rest * 1e6)}ns`;
  } else {
    const h = Math.floor(rest / 3_600_000);
    rest -= h * 3_600_000;
    const m = Math.floor(rest / 60_000);
    rest -= m * 60_000;
    out = `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trim(rest / 1000)}s`;
  }
  return neg ? `-${out}` : out;
}

const trim = (n: number) => String(Number(n.toFixed(9)));

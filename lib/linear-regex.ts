// User-supplied regular expressions (PathRegex, header and query Regex): RE2 syntax, whole-string match in linear time, compiled once per pattern.

import { RE2JS } from 're2js';
import type { ErrorCode } from './error-codes.js';

/** Whether a whole string matches; never backtracks (RE2's automata), so time is linear in the input. */
export type LinearRegex = (input: string) => boolean;

/** Why a pattern is refused, naming RE2 as the syntax required (the caller prefixes the field). */
export class RegexSyntaxError extends Error {
  readonly code = 'REGEX_NOT_RE2' satisfies ErrorCode;
}

/** Compiled patterns by source text; bounded so patterns from churned config cannot grow it without end. */
const cache = new Map<string, LinearRegex>();
const CACHE_MAX = 1024;

/**
 * Compiles `pattern` as Envoy's safe_regex (RE2) does: it must match the whole input, as `^(?:pattern)$` did.
 * Throws RegexSyntaxError for what RE2 refuses: invalid syntax, backreferences, lookarounds, possessive quantifiers.
 */
export function compileLinearRegex(pattern: string): LinearRegex {
  const hit = cache.get(pattern);
  if (hit) return hit;
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    const why = String((e as Error).message ?? e).replace(/^error parsing regexp: /, '');
    throw new RegexSyntaxError(`${why} (RE2 syntax is required: no backreferences, lookarounds or possessive quantifiers)`);
  }
  const m: LinearRegex = (input) => re.testExact(input);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(pattern, m);
  return m;
}

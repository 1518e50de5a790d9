// HTTP request matching shared by routes and L7 intentions: path (exact, prefix, regex), methods, headers (present, exact, prefix, suffix, regex, invert), query parameters.

import { compileLinearRegex } from '../lib/linear-regex.js';

export interface HeaderMatch { Name?: string; Present?: boolean; Exact?: string; Prefix?: string; Suffix?: string; Regex?: string; Invert?: boolean }
export interface QueryMatch { Name?: string; Present?: boolean; Exact?: string; Regex?: string }
export interface HttpMatchSpec {
  PathExact?: string;
  PathPrefix?: string;
  PathRegex?: string;
  Methods?: string[];
  Header?: HeaderMatch[];
  QueryParam?: QueryMatch[];
}

export interface RequestFacts { method: string; path: string; query: URLSearchParams; headers: Record<string, string | string[] | undefined> }

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** A whole-string regular expression, as Envoy's safe_regex (RE2) matches: linear time, compiled once per pattern. */
const fullRegex = (re: string) => compileLinearRegex(re);

function header(h: RequestFacts['headers'], name: string): string | undefined {
  // Own properties only: a header named `constructor` or `__proto__` that was not sent is absent, not Object's.
  const k = name.toLowerCase();
  const v = Object.hasOwn(h, k) ? h[k] : undefined;
  return Array.isArray(v) ? v.join(',') : v === undefined ? undefined : String(v);
}

/** Compiles a match; every part given must hold. Throws on a bad regular expression. */
export function httpMatcher(spec: HttpMatchSpec | undefined): (r: RequestFacts) => boolean {
  const m = spec ?? {};
  const tests: ((r: RequestFacts) => boolean)[] = [];
  if (m.PathExact) tests.push((r) => r.path === m.PathExact);
  if (m.PathPrefix) tests.push((r) => r.path.startsWith(m.PathPrefix!));
  if (m.PathRegex) { const re = fullRegex(m.PathRegex); tests.push((r) => re(r.path)); }
  if (m.Methods?.length) { const methods = m.Methods; tests.push((r) => methods.includes(r.method)); }
  for (const h of m.Header ?? []) {
    const name = String(h.Name);
    const re = h.Regex ? fullRegex(h.Regex) : undefined;
    const one = (r: RequestFacts) => {
      const v = header(r.headers, name);
      if (h.Present) return v !== undefined;
      if (v === undefined) return false;
      if (h.Exact !== undefined && h.Exact !== '') return v === h.Exact;
      if (h.Prefix) return v.startsWith(h.Prefix);
      if (h.Suffix) return v.endsWith(h.Suffix);
      if (re) return re(v);
      return true;
    };
    tests.push(h.Invert ? (r) => !one(r) : one);
  }
  for (const q of m.QueryParam ?? []) {
    const name = String(q.Name);
    const re = q.Regex ? fullRegex(q.Regex) : undefined;
    tests.push((r) => {
      const v = r.query.get(name);
      if (q.Present) return v !== null;
      if (v === null) return false;
      if (q.Exact !== undefined && q.Exact !== '') return v === q.Exact;
      return re ? re(v) : true;
    });
  }
  return (r) => tests.every((t) => t(r));
}

/** What is wrong with a match spec, as Consul words it (`at` names where it sits); empty when valid. */
export function httpMatchErrors(m: HttpMatchSpec, at: string): string[] {
  const errs: string[] = [];
  const paths = (['PathExact', 'PathPrefix', 'PathRegex'] as const).filter((k) => m[k] !== undefined && m[k] !== '');
  if (paths.length > 1) errs.push(`${at} should only contain at most one of PathExact, PathPrefix, or PathRegex`);
  for (const k of ['PathExact', 'PathPrefix'] as const) if (m[k] && !m[k]!.startsWith('/')) errs.push(`${at} ${k} doesn't start with '/': "${m[k]}"`);
  const regexes: [string, string | undefined][] = [
    [`${at} PathRegex`, m.PathRegex],
    ...(m.Header ?? []).map((h, j) => [`${at} Header[${j}] Regex`, h.Regex] as [string, string | undefined]),
    // Every regular expression httpMatcher compiles is checked here: none may first fail at request time.
    ...(m.QueryParam ?? []).map((q, j) => [`${at} QueryParam[${j}] Regex`, q.Regex] as [string, string | undefined]),
  ];
  for (const [where, re] of regexes) {
    if (!re) continue;
    try { fullRegex(re); } catch (e) { errs.push(`${where}: invalid regular expression: ${(e as Error).message}`); }
  }
  for (const [j, h] of (m.Header ?? []).entries()) {
    if (!h.Name) errs.push(`${at} Header[${j}] missing required Name field`);
    const set = (['Present', 'Exact', 'Prefix', 'Suffix', 'Regex'] as const).filter((k) => h[k] !== undefined && h[k] !== '' && h[k] !== false);
    if (set.length > 1) errs.push(`${at} Header[${j}] should only contain one of Present, Exact, Prefix, Suffix, or Regex`);
  }
  for (const [j, q] of (m.QueryParam ?? []).entries()) {
    if (!q.Name) errs.push(`${at} QueryParam[${j}] missing required Name field`);
    const set = (['Present', 'Exact', 'Regex'] as const).filter((k) => q[k] !== undefined && q[k] !== '' && q[k] !== false);
    if (set.length > 1) errs.push(`${at} QueryParam[${j}] should only contain one of Present, Exact, or Regex`);
  }
  for (const meth of m.Methods ?? []) if (!HTTP_METHODS.includes(meth)) errs.push(`${at} Methods contains an invalid method "${meth}"`);
  return errs;
}

// One normalized view of an HTTP request target, used both to decide L7 intentions and routes and as what is forwarded:
// unreserved percent-escapes decoded, dot segments resolved, slashes merged; escaped slashes and backslashes refused.

/**
 * What `%2F` / `%5C` in a path do (Envoy's path_with_escaped_slashes_action): `reject` the request (the default),
 * `keep` them as escapes (the app must not decode them into separators), or `unescape` them into `/` and `\\` before
 * the path is normalized (so the decision sees the separators the app would).
 */
export type EscapedSlashes = 'reject' | 'keep' | 'unescape';

/** How strict the normalization is (Envoy's merge_slashes and path_with_escaped_slashes_action). */
export interface PathOptions {
  /** `//a///b` → `/a/b` (default true). */
  mergeSlashes?: boolean;
  /** Default `reject`. */
  escapedSlashes?: EscapedSlashes;
}

/** What header names with `_` do (Envoy's headers_with_underscores_action): `reject` (400, the default), `drop` them, or `allow`. */
export type UnderscoreAction = 'reject' | 'drop' | 'allow';

/** The normalized path (starting with `/`, or `*`) and the query as sent (without `?`), or why the target is refused. */
export type NormalizedTarget = { path: string; query: string } | { error: string };

const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 §5.2.4 on a path of literal segments: `.` dropped, `..` removes the one before; never above the root. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segs = path.split('/').slice(1);
  segs.forEach((s, i) => {
    const last = i === segs.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  });
  return `/${out.join('/')}`;
}

/**
 * Normalizes a request target as Envoy's `normalize_path` does, so that the path an intention or route is decided on
 * is exactly the path the application receives. Refuses what an application could read as another path.
 */
export function normalizeRequestTarget(target: string, opts: PathOptions = {}): NormalizedTarget {
  if (target === '*') return { path: '*', query: '' };
  let t = target;
  // absolute-form (a proxy request): keep the path and query only.
  const abs = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(t);
  if (abs) t = t.slice(abs[0].length) || '/';
  if (!t.startsWith('/')) return { error: 'the request target must be a path starting with /' };
  if (t.includes('#')) return { error: 'a request target carries no fragment' };
  const q = t.indexOf('?');
  const raw = q < 0 ? t : t.slice(0, q);
  const query = q < 0 ? '' : t.slice(q + 1);
  let path = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    const code = c.charCodeAt(0);
    if (code <= 0x20 || code >= 0x7f) return { error: 'the path holds a control, space or non-ASCII character (percent-encode it)' };
    if (c === '\\') return { error: 'a backslash in the path is refused (an application may read it as /)' };
    if (c !== '%') {
      path += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return { error: `invalid percent-encoding ${JSON.stringify(raw.slice(i, i + 3))} in the path` };
    const ch = String.fromCharCode(Number.parseInt(hex, 16));
    i += 2;
    if (ch === '/' || ch === '\\') {
      const action = opts.escapedSlashes ?? 'reject';
      if (action === 'reject') return { error: `an escaped ${ch === '/' ? 'slash (%2F)' : 'backslash (%5C)'} in the path is refused (an application may read it as a separator)` };
      // Unescaped, a backslash is still refused: applications disagree on whether it separates segments.
      if (action === 'unescape' && ch === '\\') return { error: 'an escaped backslash (%5C) in the path is refused (an application may read it as /)' };
      path += action === 'unescape' ? '/' : `%${hex.toUpperCase()}`;
    } else if (UNRESERVED.test(ch)) path += ch;
    else path += `%${hex.toUpperCase()}`;
  }
  if (opts.mergeSlashes !== false) path = path.replace(/\/{2,}/g, '/');
  return { path: removeDotSegments(path), query };
}

/** The target to forward: the normalized path and the query as it came. */
export const targetOf = (n: { path: string; query: string }) => (n.query ? `${n.path}?${n.query}` : n.path);

/** The normalized target as a URL (pathname and search as normalized), or why it is refused. */
export function normalizedUrl(target: string, opts: PathOptions = {}): URL | { error: string } {
  const n = normalizeRequestTarget(target, opts);
  return 'error' in n ? n : new URL(targetOf(n), 'http://request');
}

/**
 * Header names with `_`: refused on the L7 path (Envoy's headers_with_underscores_action REJECT_REQUEST), since many
 * applications (CGI/WSGI, PHP) read `X_Debug` as `X-Debug` and a rule on one would not see the other. The first
 * such name, or undefined.
 */
export function underscoreHeader(headers: Record<string, unknown>): string | undefined {
  for (const k of Object.keys(headers)) if (k.includes('_')) return k;
  return undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** Field values: visible ASCII and obs-text, spaces and tabs inside; never CR, LF or NUL (RFC 9110 §5.5, RFC 9113 §8.2.1). */
const FIELD_VALUE = /^[^\0\r\n]*$/;

/**
 * What is wrong with a request's header fields as received (names lower case, as both HTTP/1.1 and HTTP/2 parsers
 * report them), or undefined. HTTP/1.1's parser refuses these already; HTTP/2 hands over what the peer encoded.
 */
export function headerFieldError(headers: Record<string, string | string[] | undefined>): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name)) return `invalid header name ${JSON.stringify(name.slice(0, 64))}`;
    for (const v of Array.isArray(value) ? value : [value ?? '']) if (!FIELD_VALUE.test(v)) return `header ${name} holds CR, LF or NUL`;
  }
  return undefined;
}

/**
 * Applies the underscore action to a request's headers before it is decided and forwarded: the refused name (reject),
 * or undefined once `drop` has removed every such header (or `allow` kept them, matched exactly as written).
 */
export function applyUnderscoreAction(headers: Record<string, unknown>, action: UnderscoreAction = 'reject'): string | undefined {
  if (action === 'allow') return undefined;
  const name = underscoreHeader(headers);
  if (name === undefined || action === 'reject') return name;
  for (const k of Object.keys(headers)) if (k.includes('_')) delete headers[k];
  return undefined;
}

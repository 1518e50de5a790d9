// One normalized view of an HTTP request target, used both to decide L7 intentions and routes and as what is forwarded:
// unreserved percent-escapes decoded, dot segments resolved, slashes merged; escaped slashes and backslashes refused.

/** How strict the normalization is (Envoy's merge_slashes and path_with_escaped_slashes_action). */
export interface PathOptions {
  /** `//a///b` → `/a/b` (default true). */
  mergeSlashes?: boolean;
  /** Pass `%2F` / `%5C` through as escapes instead of refusing the request (default false). */
  allowEscapedSlashes?: boolean;
}

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
      if (!opts.allowEscapedSlashes) return { error: `an escaped ${ch === '/' ? 'slash (%2F)' : 'backslash (%5C)'} in the path is refused (an application may read it as a separator)` };
      path += `%${hex.toUpperCase()}`;
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

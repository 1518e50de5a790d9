// Service and namespace names: the ASCII character set a name may use, and the case folding every name lookup compares by.

/** What a service (or namespace) name may contain: the set a SPIFFE ID segment takes as is (see isSpiffeSafe). */
export const NAME_CHARS = 'A-Za-z0-9._-';
const NAME = new RegExp(`^[${NAME_CHARS}]+$`);
const NOT_NAME = new RegExp(`[^${NAME_CHARS}]`, 'u');
const UPPER = /[A-Z]/;
const UPPER_RUNS = /[A-Z]+/g;
/** What a name may be, for error texts. */
export const NAME_RULE = "use only ASCII letters, digits, '.', '_' and '-'";

/** A name of ASCII letters, digits, '.', '_' and '-' only (not '.' or '..'): no look-alike Unicode, no zero-width or control characters. */
export const isServiceName = (name: string): boolean => NAME.test(name) && name !== '.' && name !== '..';

/**
 * The form names compare in (Consul indexes service names lower-cased). ASCII only, on purpose: Unicode lower-casing
 * maps the Kelvin sign 'K' (U+212A) to 'k', which would let a look-alike name equal a real one.
 */
export function foldName(name: string): string {
  return UPPER.test(name) ? name.replace(UPPER_RUNS, (m) => m.toLowerCase()) : name;
}

/** Equal names, case-insensitively (ASCII); `folded` must already be folded. */
export const sameName = (name: string, folded: string): boolean =>
  name.length === folded.length && (name === folded || foldName(name) === folded);

/**
 * Why `name` is not a service name, naming the first offending character by code point (U+200B reads better than
 * an invisible character); undefined when it is one. NAME_RULE says what is allowed.
 */
export function nameProblem(name: string): string | undefined {
  if (name === '') return 'it is empty';
  if (name === '.' || name === '..') return `'${name}' is a path segment, not a name`;
  const m = NOT_NAME.exec(name);
  if (!m) return undefined;
  const cp = m[0].codePointAt(0)!;
  const shown = cp >= 0x21 && cp < 0x7f ? `'${m[0]}' (U+${hex(cp)})` : `U+${hex(cp)}`;
  return `character ${shown} at offset ${m.index} is not allowed`;
}

/** A name for an error text: JSON-quoted, with everything outside printable ASCII escaped, so look-alikes show. */
export function showName(name: string): string {
  return `"${[...name].map((c) => {
    const cp = c.codePointAt(0)!;
    if (c === '"' || c === '\\') return `\\${c}`;
    return cp >= 0x20 && cp < 0x7f ? c : cp > 0xffff ? `\\u{${hex(cp)}}` : `\\u${hex(cp)}`;
  }).join('')}"`;
}

const hex = (cp: number) => cp.toString(16).toUpperCase().padStart(4, '0');

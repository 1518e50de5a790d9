// Consul's filter language (go-bexpr) over JSON values: selectors, ==, !=, in, contains, is empty, matches, and, or, not.

import { NodemeshError } from '../lib/errors.js';
import { compileLinearRegex } from '../lib/linear-regex.js';

export type Bexpr = (value: unknown) => boolean;

/** A filter longer than this is refused (a query string, not a program). */
const MAX_FILTER = 4096;
/** Nesting deeper than this (parentheses, not) is refused: the parser recurses. */
const MAX_DEPTH = 32;

type Token = { kind: 'word' | 'string' | 'op' | 'lparen' | 'rparen'; text: string };

const invalid = (message: string) => new NodemeshError('API_FILTER_INVALID', `Failed to create boolean expression evaluator: ${message}`, 400);

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '(' || c === ')') { out.push({ kind: c === '(' ? 'lparen' : 'rparen', text: c }); i++; continue; }
    if (c === '=' || c === '!') {
      if (text[i + 1] !== '=') throw invalid(`unexpected ${JSON.stringify(c)} at ${i}`);
      out.push({ kind: 'op', text: `${c}=` });
      i += 2;
      continue;
    }
    if (c === '"' || c === '`') {
      let j = i + 1;
      let s = '';
      while (j < text.length && text[j] !== c) {
        if (c === '"' && text[j] === '\\' && j + 1 < text.length) { s += text[j + 1]; j += 2; continue; }
        s += text[j++];
      }
      if (j >= text.length) throw invalid(`unterminated string at ${i}`);
      out.push({ kind: 'string', text: s });
      i = j + 1;
      continue;
    }
    const m = /^[^\s()"`=!]+/.exec(text.slice(i));
    if (!m) throw invalid(`unexpected ${JSON.stringify(c)} at ${i}`);
    out.push({ kind: 'word', text: m[0] });
    i += m[0].length;
  }
  return out;
}

/** The values a dotted selector reaches in `v`: through arrays every element is followed. */
function select(v: unknown, path: string[]): unknown[] {
  let at: unknown[] = [v];
  for (const key of path) {
    const next: unknown[] = [];
    for (const x of at) {
      const items = Array.isArray(x) ? x : [x];
      for (const item of items) {
        if (item !== null && typeof item === 'object' && !Array.isArray(item) && Object.prototype.hasOwnProperty.call(item, key)) next.push((item as Record<string, unknown>)[key]);
      }
    }
    at = next;
  }
  return at;
}

const asText = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
const isEmpty = (v: unknown) => v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && Object.keys(v as object).length === 0);
/** What a selector names as a collection: an array's elements, a map's keys (Meta), or the one value. */
const members = (v: unknown): unknown[] => (Array.isArray(v) ? v : v !== null && typeof v === 'object' ? Object.keys(v as object) : [v]);

class Parser {
  private pos = 0;
  constructor(private readonly t: Token[]) {}

  parse(): Bexpr {
    const e = this.or(0);
    if (this.pos < this.t.length) throw invalid(`unexpected ${JSON.stringify(this.t[this.pos].text)}`);
    return e;
  }

  private peekWord(w: string, at = 0): boolean {
    const x = this.t[this.pos + at];
    return x?.kind === 'word' && x.text.toLowerCase() === w;
  }

  private or(depth: number): Bexpr {
    let left = this.and(depth);
    while (this.peekWord('or')) {
      this.pos++;
      const l = left, r = this.and(depth);
      left = (v) => l(v) || r(v);
    }
    return left;
  }

  private and(depth: number): Bexpr {
    let left = this.unary(depth);
    while (this.peekWord('and')) {
      this.pos++;
      const l = left, r = this.unary(depth);
      left = (v) => l(v) && r(v);
    }
    return left;
  }

  private unary(depth: number): Bexpr {
    if (depth > MAX_DEPTH) throw invalid('expression nested too deeply');
    if (this.peekWord('not')) {
      this.pos++;
      const e = this.unary(depth + 1);
      return (v) => !e(v);
    }
    if (this.t[this.pos]?.kind === 'lparen') {
      this.pos++;
      const e = this.or(depth + 1);
      if (this.t[this.pos]?.kind !== 'rparen') throw invalid('missing )');
      this.pos++;
      return e;
    }
    return this.match();
  }

  private take(): Token {
    const x = this.t[this.pos++];
    if (!x) throw invalid('unexpected end of expression');
    return x;
  }

  private selector(): string[] {
    const x = this.take();
    if (x.kind !== 'word' || !/^[A-Za-z_][A-Za-z0-9_]*(\.[^.\s]+)*$/.test(x.text)) throw invalid(`expected a selector, got ${JSON.stringify(x.text)}`);
    return x.text.split('.');
  }

  private value(): string {
    const x = this.take();
    if (x.kind !== 'word' && x.kind !== 'string') throw invalid(`expected a value, got ${JSON.stringify(x.text)}`);
    return x.text;
  }

  private match(): Bexpr {
    // <Value> [not] in <Selector>
    const first = this.t[this.pos];
    if (first && (first.kind === 'string' || first.kind === 'word') && (this.peekWord('in', 1) || (this.peekWord('not', 1) && this.peekWord('in', 2)))) {
      const want = this.value();
      const neg = this.peekWord('not') ? (this.pos++, true) : false;
      this.pos++;
      const path = this.selector();
      return (v) => select(v, path).some((x) => members(x).some((m) => asText(m) === want)) !== neg;
    }
    const path = this.selector();
    const op = this.take();
    if (op.kind === 'op') {
      const want = this.value();
      const eq = op.text === '==';
      return (v) => select(v, path).some((x) => !Array.isArray(x) && asText(x) === want) === eq;
    }
    const word = op.kind === 'word' ? op.text.toLowerCase() : '';
    if (word === 'is') {
      const neg = this.peekWord('not') ? (this.pos++, true) : false;
      if (!this.peekWord('empty')) throw invalid('expected "empty" after "is"');
      this.pos++;
      return (v) => { const xs = select(v, path); return (xs.length === 0 || xs.every(isEmpty)) !== neg; };
    }
    const neg = word === 'not';
    const verb = neg ? this.take().text.toLowerCase() : word;
    if (verb === 'contains') {
      const want = this.value();
      return (v) => select(v, path).some((x) => (typeof x === 'string' ? x.includes(want) : members(x).some((m) => asText(m) === want))) !== neg;
    }
    if (verb === 'matches') {
      const pattern = this.value();
      let re: (s: string) => boolean;
      try {
        re = compileLinearRegex(`(?s).*(?:${pattern}).*`);
      } catch (e) {
        throw invalid(`bad regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}`);
      }
      return (v) => select(v, path).some((x) => typeof x === 'string' && re(x)) !== neg;
    }
    throw invalid(`unknown operator ${JSON.stringify(op.text)} (==, !=, in, not in, contains, not contains, is empty, is not empty, matches, not matches)`);
  }
}

/** Compiles a filter; a malformed one is a 400 naming what is wrong. */
export function compileBexpr(text: string): Bexpr {
  if (text.length > MAX_FILTER) throw invalid(`filter longer than ${MAX_FILTER} characters`);
  const tokens = tokenize(text);
  if (!tokens.length) throw invalid('empty filter');
  return new Parser(tokens).parse();
}

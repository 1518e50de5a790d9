// Fuzz inputs: a seeded PRNG, byte mutations of valid seeds (flips, splices, truncations, length fields) and JSON mutations (type swaps, deep nesting, huge and odd values).

export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  next(): number {
    // xorshift32
    let x = this.s;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.s = x;
    return x;
  }
  int(n: number): number { return this.next() % Math.max(1, n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  bytes(n: number): Buffer { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = this.next() & 0xff; return b; }
}

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xc4, 0xc5, 0xc6, 0x90, 0x9f, 0x80, 0x8f];

/** One to four mutations of a seed; sometimes plain random bytes. */
export function mutateBytes(rng: Rng, seeds: readonly Buffer[]): Buffer {
  if (rng.int(10) === 0 || seeds.length === 0) return rng.bytes(rng.int(256));
  let b = Buffer.from(rng.pick(seeds));
  for (let k = 1 + rng.int(4); k > 0; k--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(8)) {
      case 0: if (b.length) b[at % b.length] ^= 1 << rng.int(8); break;
      case 1: if (b.length) b[at % b.length] = rng.pick(INTERESTING); break;
      case 2: b = b.subarray(0, at); break;
      case 3: b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(16)), b.subarray(at)]); break;
      case 4: b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + rng.int(8)))]); break;
      case 5: { const other = rng.pick(seeds); b = Buffer.concat([b.subarray(0, at), other.subarray(rng.int(other.length + 1))]); break; }
      case 6: if (b.length >= 4) b.writeUInt32BE(rng.pick([0, 1, 0x7fffffff, 0xffffffff, 0x10000, rng.next()]), Math.min(at, b.length - 4)); break;
      default: b = Buffer.concat([b, b.subarray(0, rng.int(b.length + 1))]);
    }
  }
  return b;
}

const ODD_STRINGS = ['', ' ', '\u0000', '💥', 'a'.repeat(70_000), '../../etc', '${x}', '%s', '\ud800', 'null', '-1', '1e309', '0x10', '/', '*', 'a*', '72h', '-5s', '1s1', 'GET', '__proto__', 'constructor'];
const ODD_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e309 === Infinity ? 1e308 : 0, [], {}, [[[[]]]], { a: { b: { c: {} } } }];

function oddValue(rng: Rng, depth: number): unknown {
  switch (rng.int(6)) {
    case 0: return rng.pick(ODD_STRINGS);
    case 1: return rng.pick(ODD_VALUES);
    case 2: return rng.int(1_000_000) - 500_000;
    case 3: { let v: unknown = 'deep'; for (let i = rng.int(200); i > 0; i--) v = rng.int(2) ? [v] : { k: v }; return v; }
    case 4: return depth < 3 ? Object.fromEntries(Array.from({ length: rng.int(4) }, () => [rng.pick(ODD_STRINGS).slice(0, 20) || 'k', oddValue(rng, depth + 1)])) : 'x';
    default: return Array.from({ length: rng.int(5) }, () => (depth < 3 ? oddValue(rng, depth + 1) : 1));
  }
}

/** Mutates a JSON object: changes, deletes or adds fields at any depth, sometimes breaks the text itself. */
export function mutateJson(rng: Rng, seeds: readonly unknown[]): string {
  const doc = structuredClone(rng.pick(seeds)) as unknown;
  const paths: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 6 || v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      paths.push({ parent: v as Record<string, unknown>, key: Array.isArray(v) ? Number(k) : k });
      walk(x, depth + 1);
    }
  };
  walk(doc, 0);
  for (let k = 1 + rng.int(3); k > 0 && paths.length; k--) {
    const p = rng.pick(paths);
    const parent = p.parent as Record<string | number, unknown>;
    switch (rng.int(4)) {
      case 0: delete parent[p.key]; break;
      case 1: parent[p.key] = oddValue(rng, 0); break;
      case 2: if (!Array.isArray(parent)) parent[rng.pick(ODD_STRINGS).slice(0, 12) || 'Extra'] = oddValue(rng, 0); break;
      default: {
        const v = parent[p.key];
        parent[p.key] = typeof v === 'string' ? rng.int(100) : typeof v === 'object' ? JSON.stringify(v) ?? 'x' : String(v);
      }
    }
  }
  let text = JSON.stringify(doc) ?? 'null';
  if (rng.int(12) === 0) text = text.slice(0, rng.int(text.length + 1));
  if (rng.int(20) === 0) text = text.replace(/"/, "'");
  return text;
}

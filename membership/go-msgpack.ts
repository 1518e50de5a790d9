// msgpack exactly as hashicorp/go-msgpack 0.5 writes it for memberlist and Serf: old-spec raw strings for text
// and bytes alike, maps with byte-sorted keys, smallest integer forms. Decoding accepts every form Go accepts.
//
// Written by hand because no maintained msgpack library can emit byte arrays as old-spec raw strings (they
// all use bin8/16/32 for bytes), which Go's decoder rejects for string fields and Serf expects for []byte.

export type GoValue = null | boolean | number | bigint | Uint8Array | string | Float64 | GoValue[] | { [k: string]: GoValue };

/** A number that Go declares float64: always written as a msgpack double, even when it is whole (0, 1.5e-5, 2). */
export class Float64 {
  constructor(readonly value: number) {}
}

export class MsgpackError extends Error {}
/** The input ended inside a value: on a stream, more bytes may complete it. */
export class MsgpackTruncated extends MsgpackError {}

export function encode(value: GoValue): Buffer {
  const out: Buffer[] = [];
  write(value, out);
  return Buffer.concat(out);
}

function raw(bytes: Uint8Array, out: Buffer[]): void {
  const n = bytes.length;
  if (n < 32) out.push(Buffer.from([0xa0 | n]));
  else if (n < 0x10000) out.push(Buffer.from([0xda, n >> 8, n & 0xff]));
  else {
    const h = Buffer.alloc(5);
    h[0] = 0xdb;
    h.writeUInt32BE(n, 1);
    out.push(h);
  }
  out.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

function int(v: bigint, out: Buffer[]): void {
  if (v >= 0n) {
    if (v < 128n) out.push(Buffer.from([Number(v)]));
    else if (v < 256n) out.push(Buffer.from([0xcc, Number(v)]));
    else if (v < 65536n) { const b = Buffer.alloc(3); b[0] = 0xcd; b.writeUInt16BE(Number(v), 1); out.push(b); }
    else if (v < 4294967296n) { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(Number(v), 1); out.push(b); }
    else { const b = Buffer.alloc(9); b[0] = 0xcf; b.writeBigUInt64BE(v, 1); out.push(b); }
  } else if (v >= -32n) out.push(Buffer.from([Number(v) & 0xff]));
  else if (v >= -128n) { const b = Buffer.alloc(2); b[0] = 0xd0; b.writeInt8(Number(v), 1); out.push(b); }
  else if (v >= -32768n) { const b = Buffer.alloc(3); b[0] = 0xd1; b.writeInt16BE(Number(v), 1); out.push(b); }
  else if (v >= -2147483648n) { const b = Buffer.alloc(5); b[0] = 0xd2; b.writeInt32BE(Number(v), 1); out.push(b); }
  else { const b = Buffer.alloc(9); b[0] = 0xd3; b.writeBigInt64BE(v, 1); out.push(b); }
}

function len(n: number, fix: number, c16: number, c32: number, out: Buffer[]): void {
  if (n < 16) out.push(Buffer.from([fix | n]));
  else if (n < 0x10000) out.push(Buffer.from([c16, n >> 8, n & 0xff]));
  else { const b = Buffer.alloc(5); b[0] = c32; b.writeUInt32BE(n, 1); out.push(b); }
}

function write(v: GoValue, out: Buffer[]): void {
  if (v === null || v === undefined) out.push(Buffer.from([0xc0]));
  else if (typeof v === 'boolean') out.push(Buffer.from([v ? 0xc3 : 0xc2]));
  else if (typeof v === 'bigint') int(v, out);
  else if (typeof v === 'number') {
    if (Number.isInteger(v)) int(BigInt(v), out);
    else { const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(v, 1); out.push(b); }
  } else if (typeof v === 'string') raw(Buffer.from(v, 'utf8'), out);
  else if (v instanceof Float64) { const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(v.value, 1); out.push(b); }
  else if (v instanceof Uint8Array) raw(v, out);
  else if (Array.isArray(v)) {
    len(v.length, 0x90, 0xdc, 0xdd, out);
    for (const item of v) write(item, out);
  } else {
    // Go's codec sorts struct and map keys by their bytes.
    const map = v as { [k: string]: GoValue };
    const keys = Object.keys(map).filter((k) => map[k] !== undefined).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    len(keys.length, 0x80, 0xde, 0xdf, out);
    for (const k of keys) {
      raw(Buffer.from(k, 'utf8'), out);
      write(map[k], out);
    }
  }
}

/** A decoded value: every str/bin becomes a Buffer; map keys become strings. */
export type Decoded = null | boolean | number | bigint | Buffer | Decoded[] | { [k: string]: Decoded };

const MAX_LEN = 64 * 1024 * 1024;

export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer, private depth = 0) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (n > MAX_LEN) throw new MsgpackError(`msgpack length ${n} over the ${MAX_LEN}-byte limit`);
    if (this.pos + n > this.buf.length) throw new MsgpackTruncated(`truncated msgpack: need ${n} bytes at ${this.pos} of ${this.buf.length}`);
  }

  private u8(): number { this.need(1); return this.buf[this.pos++]; }
  private u16(): number { this.need(2); const v = this.buf.readUInt16BE(this.pos); this.pos += 2; return v; }
  private u32(): number { this.need(4); const v = this.buf.readUInt32BE(this.pos); this.pos += 4; return v; }
  private bytes(n: number): Buffer { this.need(n); const b = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return b; }

  /** Reads one complete value. */
  value(): Decoded {
    if (this.depth > 64) throw new MsgpackError('msgpack nested too deep');
    const t = this.u8();
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xe0) === 0xa0) return this.bytes(t & 0x1f);
    if ((t & 0xf0) === 0x90) return this.array(t & 0x0f);
    if ((t & 0xf0) === 0x80) return this.map(t & 0x0f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: case 0xd9: return this.bytes(this.u8());
      case 0xc5: case 0xda: return this.bytes(this.u16());
      case 0xc6: case 0xdb: return this.bytes(this.u32());
      case 0xca: { this.need(4); const v = this.buf.readFloatBE(this.pos); this.pos += 4; return v; }
      case 0xcb: { this.need(8); const v = this.buf.readDoubleBE(this.pos); this.pos += 8; return v; }
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: { this.need(8); const v = this.buf.readBigUInt64BE(this.pos); this.pos += 8; return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case 0xd0: { this.need(1); const v = this.buf.readInt8(this.pos); this.pos += 1; return v; }
      case 0xd1: { this.need(2); const v = this.buf.readInt16BE(this.pos); this.pos += 2; return v; }
      case 0xd2: { this.need(4); const v = this.buf.readInt32BE(this.pos); this.pos += 4; return v; }
      case 0xd3: { this.need(8); const v = this.buf.readBigInt64BE(this.pos); this.pos += 8; return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case 0xdc: return this.array(this.u16());
      case 0xdd: return this.array(this.u32());
      case 0xde: return this.map(this.u16());
      case 0xdf: return this.map(this.u32());
      default: throw new MsgpackError(`unsupported msgpack type 0x${t.toString(16)}`);
    }
  }

  private array(n: number): Decoded[] {
    if (n > MAX_LEN) throw new MsgpackError(`msgpack array of ${n} items is over the limit`);
    if (n > this.remaining) throw new MsgpackTruncated(`msgpack array of ${n} items cannot fit in ${this.remaining} bytes`);
    this.depth++;
    const out: Decoded[] = [];
    for (let i = 0; i < n; i++) out.push(this.value());
    this.depth--;
    return out;
  }

  private map(n: number): { [k: string]: Decoded } {
    if (n > MAX_LEN) throw new MsgpackError(`msgpack map of ${n} entries is over the limit`);
    if (n * 2 > this.remaining) throw new MsgpackTruncated(`msgpack map of ${n} entries cannot fit in ${this.remaining} bytes`);
    this.depth++;
    const out: { [k: string]: Decoded } = Object.create(null);
    for (let i = 0; i < n; i++) {
      const k = this.value();
      if (!Buffer.isBuffer(k)) throw new MsgpackError('msgpack map key is not a string');
      out[k.toString('utf8')] = this.value();
    }
    this.depth--;
    return out;
  }
}

export function decode(buf: Buffer): Decoded {
  return new Reader(buf).value();
}

// ---- typed field access, with Go's zero values for missing fields ----

type Obj = { [k: string]: Decoded };

export function asObject(v: Decoded, what: string): Obj {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v) || Array.isArray(v)) throw new MsgpackError(`${what}: expected a map`);
  return v;
}

export function str(o: Obj, k: string): string {
  const v = o[k];
  if (v === undefined || v === null) return '';
  if (!Buffer.isBuffer(v)) throw new MsgpackError(`field ${k}: expected a string`);
  return v.toString('utf8');
}

export function bytes(o: Obj, k: string): Buffer | null {
  const v = o[k];
  if (v === undefined || v === null) return null;
  if (!Buffer.isBuffer(v)) throw new MsgpackError(`field ${k}: expected bytes`);
  return v;
}

export function uint(o: Obj, k: string, max = 0xffffffff): number {
  const v = o[k];
  if (v === undefined || v === null) return 0;
  if (typeof v === 'bigint') {
    if (v < 0n || v > BigInt(max)) throw new MsgpackError(`field ${k}: ${v} out of range`);
    return Number(v);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new MsgpackError(`field ${k}: expected an unsigned integer up to ${max}`);
  return v;
}

/** A float64 field: Go's decoder takes any msgpack number for one; NaN and infinities are refused. */
export function float(o: Obj, k: string): number {
  const v = o[k];
  return v === undefined || v === null ? 0 : asFloat(v, `field ${k}`);
}

export function asFloat(v: Decoded, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new MsgpackError(`${what}: expected a finite number`);
  return n;
}

export function bool(o: Obj, k: string): boolean {
  const v = o[k];
  if (v === undefined || v === null) return false;
  if (v === true || v === 1) return true;
  if (v === false || v === 0) return false;
  throw new MsgpackError(`field ${k}: expected a bool`);
}

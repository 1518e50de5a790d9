// Go's compress/lzw with LSB bit order and 8-bit literals (what memberlist compresses with), both ways.

const CLEAR = 256;
const EOF_CODE = 257;
const MAX_WIDTH = 12;
const MAX_CODE = 4095;

export class LzwError extends Error {}
/** The compressed input ended before its end code: on a stream, more bytes may complete it. */
export class LzwTruncated extends LzwError {}

export function lzwCompress(input: Uint8Array): Buffer {
  const out: number[] = [];
  let bits = 0;
  let nBits = 0;
  let width = 9;
  const emit = (code: number) => {
    bits |= code << nBits;
    nBits += width;
    while (nBits >= 8) {
      out.push(bits & 0xff);
      bits >>>= 8;
      nBits -= 8;
    }
  };
  let hi = EOF_CODE;
  let overflow = 1 << width;
  let table = new Map<number, number>(); // (prefix << 8 | byte) → code
  // Returns true if a CLEAR reset happened (then the entry is not added).
  const incHi = (): boolean => {
    hi++;
    if (hi === overflow) {
      width++;
      overflow <<= 1;
    }
    if (hi === MAX_CODE) {
      emit(CLEAR);
      width = 9;
      hi = EOF_CODE;
      overflow = 1 << width;
      table = new Map();
      return true;
    }
    return false;
  };
  if (input.length > 0) {
    let code = input[0];
    for (let i = 1; i < input.length; i++) {
      const b = input[i];
      const key = (code << 8) | b;
      const hit = table.get(key);
      if (hit !== undefined) {
        code = hit;
        continue;
      }
      emit(code);
      code = b;
      if (!incHi()) table.set(key, hi);
    }
    emit(code);
    incHi();
  }
  emit(EOF_CODE);
  if (nBits > 0) out.push(bits & 0xff);
  return Buffer.from(out);
}

export function lzwDecompress(input: Uint8Array, maxOutput = 40 * 1024 * 1024): Buffer {
  const prefix = new Int32Array(1 << MAX_WIDTH);
  const suffix = new Uint8Array(1 << MAX_WIDTH);
  const chunks: Buffer[] = [];
  let total = 0;
  let width = 9;
  let hi = EOF_CODE;
  let overflow = 1 << width;
  let last = -1;
  let bits = 0;
  let nBits = 0;
  let pos = 0;
  const scratch = new Uint8Array(1 << MAX_WIDTH);
  for (;;) {
    while (nBits < width) {
      if (pos >= input.length) throw new LzwTruncated('lzw: unexpected EOF');
      bits |= input[pos++] << nBits;
      nBits += 8;
    }
    const code = bits & ((1 << width) - 1);
    bits >>>= width;
    nBits -= width;
    if (code < CLEAR) {
      chunks.push(Buffer.from([code]));
      total++;
      if (last !== -1) {
        prefix[hi] = last;
        suffix[hi] = code;
      }
    } else if (code === CLEAR) {
      width = 9;
      hi = EOF_CODE;
      overflow = 1 << width;
      last = -1;
      continue;
    } else if (code === EOF_CODE) {
      break;
    } else if (code <= hi) {
      // Expand `code` (or, for code === hi, last's expansion plus its own first byte) backwards.
      let i = scratch.length;
      let c = code;
      if (code === hi) {
        if (last === -1) throw new LzwError('lzw: invalid code');
        c = last;
        i--; // reserve the last byte; filled after we know the first byte
      }
      while (c >= EOF_CODE + 1) {
        scratch[--i] = suffix[c];
        c = prefix[c];
      }
      scratch[--i] = c;
      if (code === hi) scratch[scratch.length - 1] = c;
      const piece = Buffer.from(scratch.subarray(i));
      chunks.push(piece);
      total += piece.length;
      if (last !== -1) {
        prefix[hi] = last;
        suffix[hi] = c;
      }
    } else {
      throw new LzwError('lzw: invalid code');
    }
    if (total > maxOutput) throw new LzwError(`lzw: output over ${maxOutput} bytes`);
    last = code;
    hi++;
    if (hi >= overflow) {
      if (width === MAX_WIDTH) {
        last = -1;
        hi--;
      } else {
        width++;
        overflow = 1 << width;
      }
    }
  }
  return Buffer.concat(chunks, total);
}

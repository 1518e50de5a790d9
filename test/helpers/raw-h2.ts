// Hand-built HTTP/2 frames for hostile requests no HTTP/2 library will send (connection headers, CR/LF in values, bad names).

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const out = [firstByteFlags | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

const hpackString = (s: string) => Buffer.concat([hpackInt(Buffer.byteLength(s, 'latin1'), 7), Buffer.from(s, 'latin1')]);

/** A header block of literals without indexing, new names, no Huffman: every byte exactly as given. */
export function headerBlock(headers: [string, string][]): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0x00]), hpackString(n), hpackString(v)]));
}

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4, ACK: 0x1 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** A client's opening: preface, empty SETTINGS, then one request on stream 1 (headers, and a body if given). */
export function oneRequest(headers: [string, string][], body?: string): Buffer {
  const parts = [PREFACE, frame(FRAME.SETTINGS, 0, 0), frame(FRAME.HEADERS, FLAG.END_HEADERS | (body === undefined ? FLAG.END_STREAM : 0), 1, headerBlock(headers))];
  if (body !== undefined) parts.push(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from(body, 'latin1')));
  return Buffer.concat(parts);
}

/** The frames in what a server sent: type, flags and stream of each (payloads are not decoded). */
export function framesIn(bytes: Buffer): { type: number; flags: number; stream: number }[] {
  const out: { type: number; flags: number; stream: number }[] = [];
  let at = 0;
  while (at + 9 <= bytes.length) {
    const len = bytes.readUIntBE(at, 3);
    out.push({ type: bytes[at + 3], flags: bytes[at + 4], stream: bytes.readUInt32BE(at + 5) & 0x7fffffff });
    at += 9 + len;
  }
  return out;
}

// Datagram and stream framing around memberlist messages: compound, LZW compression, CRC and AES-GCM.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { asObject, bytes, decode, encode, uint } from './go-msgpack.js';
import { lzwCompress, lzwDecompress } from './go-lzw.js';
import { MsgType } from './wire-messages.js';

export class PacketError extends Error {}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const MAX_COMPOUND_PARTS = 127;

/** One message as-is, or several as a compound (never more than 127 parts: memberlist 0.2.2's limit). */
export function compound(parts: Buffer[]): Buffer {
  if (parts.length === 1) return parts[0];
  if (parts.length > MAX_COMPOUND_PARTS) throw new PacketError('compound over 127 parts');
  const head = Buffer.alloc(2 + 2 * parts.length);
  head[0] = MsgType.compound;
  head[1] = parts.length;
  parts.forEach((p, i) => head.writeUInt16BE(p.length, 2 + 2 * i));
  return Buffer.concat([head, ...parts]);
}

export function splitCompound(body: Buffer): Buffer[] {
  if (body.length < 1) throw new PacketError('compound: missing count');
  const n = body[0];
  if (body.length < 1 + 2 * n) throw new PacketError('compound: truncated length table');
  const parts: Buffer[] = [];
  let off = 1 + 2 * n;
  for (let i = 0; i < n; i++) {
    const len = body.readUInt16BE(1 + 2 * i);
    if (off + len > body.length) break; // memberlist drops a truncated tail
    parts.push(body.subarray(off, off + len));
    off += len;
  }
  return parts;
}

export const compress = (msg: Buffer) => Buffer.concat([Buffer.from([MsgType.compress]), encode({ Algo: 0, Buf: lzwCompress(msg) })]);

/** Decompresses a compress message; `maxOutput` bounds the work one message can cause (small for UDP). */
export function decompress(body: Buffer, maxOutput = 40 * 1024 * 1024): Buffer {
  const o = asObject(decode(body), 'compress');
  if (uint(o, 'Algo', 255) !== 0) throw new PacketError('compress: unknown algorithm');
  const buf = bytes(o, 'Buf');
  if (!buf) throw new PacketError('compress: empty buffer');
  return lzwDecompress(buf, maxOutput);
}

export const withCrc = (msg: Buffer) => {
  const h = Buffer.alloc(5);
  h[0] = MsgType.hasCrc;
  h.writeUInt32BE(crc32(msg), 1);
  return Buffer.concat([h, msg]);
};

// ---- encryption: memberlist's version-1 format, AES-GCM with a 12-byte random nonce ----

export interface Keyring { keys: Buffer[] }

const cipherName = (key: Buffer) => `aes-${key.length * 8}-gcm` as 'aes-128-gcm';

export function encrypt(key: Buffer, plain: Buffer, aad: Buffer = Buffer.alloc(0)): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv(cipherName(key), key, nonce);
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([1]), nonce, body, c.getAuthTag()]);
}

export function decrypt(keys: Buffer[], payload: Buffer, aad: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length < 29) throw new PacketError('encrypted payload too short');
  const vsn = payload[0];
  if (vsn > 1) throw new PacketError(`unsupported encryption version ${vsn}`);
  const nonce = payload.subarray(1, 13);
  const tag = payload.subarray(payload.length - 16);
  const body = payload.subarray(13, payload.length - 16);
  for (const key of keys) {
    try {
      const d = createDecipheriv(cipherName(key), key, nonce);
      d.setAAD(aad);
      d.setAuthTag(tag);
      let plain = Buffer.concat([d.update(body), d.final()]);
      if (vsn === 0) {
        const pad = plain[plain.length - 1];
        if (pad < 1 || pad > 16 || pad > plain.length) throw new PacketError('bad padding');
        plain = plain.subarray(0, plain.length - pad);
      }
      return plain;
    } catch { /* next key */ }
  }
  throw new PacketError('no installed key could decrypt the message');
}

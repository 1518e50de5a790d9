// Reading one memberlist stream (TCP) message: decryption, decompression and waiting until the whole message is here.

import type { Socket } from 'node:net';
import { asObject, MsgpackTruncated, Reader, uint } from './go-msgpack.js';
import { LzwTruncated } from './go-lzw.js';
import { decompress, decrypt, PacketError } from './packet-codec.js';
import * as m from './wire-messages.js';
import { MsgType } from './wire-messages.js';

export class EncryptionMismatch extends Error {}

/** Reads one memberlist stream message: unwraps encryption and compression, parsing incrementally. */
export class StreamReader {
  private buf = Buffer.alloc(0);
  private waiting?: () => void;
  private ended = false;

  constructor(sock: Socket, private readonly keys: Buffer[]) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      if (this.buf.length > 20 * 1024 * 1024) sock.destroy();
      this.waiting?.();
    });
    sock.on('end', () => { this.ended = true; this.waiting?.(); });
    sock.on('close', () => { this.ended = true; this.waiting?.(); });
  }

  private more(): Promise<void> {
    if (this.ended) return Promise.reject(new PacketError('stream ended early'));
    return new Promise((r) => { this.waiting = () => { this.waiting = undefined; r(); }; });
  }

  /** Waits until `parse` can read a complete message from the buffer. */
  private async parse<T>(parse: (b: Buffer) => T): Promise<T> {
    for (;;) {
      try {
        return parse(this.buf);
      } catch (e) {
        if (!(e instanceof NeedMore || e instanceof MsgpackTruncated || e instanceof LzwTruncated)) throw e;
        if (this.ended) throw new PacketError(`stream ended early: ${(e as Error).message}`);
        await this.more();
      }
    }
  }

  async message(): Promise<Buffer> {
    const first = await this.parse((b) => { if (b.length < 1) throw new NeedMore(); return b[0]; });
    let plain: Buffer;
    if (first === MsgType.encrypt) {
      if (!this.keys.length) throw new EncryptionMismatch('Remote state is encrypted and encryption is not configured');
      plain = await this.parse((b) => {
        if (b.length < 5) throw new NeedMore();
        const len = b.readUInt32BE(1);
        if (len > 20 * 1024 * 1024) throw new PacketError('encrypted stream too large');
        if (b.length < 5 + len) throw new NeedMore();
        return decrypt(this.keys, b.subarray(5, 5 + len), b.subarray(0, 5));
      });
    } else {
      if (this.keys.length) throw new EncryptionMismatch('Encryption is configured but remote state is not encrypted');
      plain = this.buf;
    }
    if (plain[0] === MsgType.compress) {
      const src = plain;
      plain = first === MsgType.encrypt ? decompress(src.subarray(1)) : await this.parse((b) => decompress(b.subarray(1)));
    }
    // A plain message may still be arriving: make sure the whole of it is here.
    if (first !== MsgType.encrypt && plain === this.buf) {
      plain = await this.parse((b) => { completeMessage(b); return b; });
    }
    return plain;
  }
}

class NeedMore extends Error {}

/** Throws NeedMore (or a truncation error) unless `b` holds a complete push/pull, ping or user message. */
function completeMessage(b: Buffer): void {
  if (b.length < 2) throw new NeedMore();
  if (b[0] === MsgType.pushPull) {
    m.readPushPull(b.subarray(1));
    return;
  }
  const r = new Reader(b.subarray(1));
  const header = r.value();
  // A reliable user message is a {UserMsgLen} header followed by that many raw bytes.
  if (b[0] === MsgType.user && 1 + r.pos + uint(asObject(header, 'userMsgHeader'), 'UserMsgLen', 20 << 20) > b.length) throw new NeedMore();
}

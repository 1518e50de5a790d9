// The tunnel's framing: many streams over one mTLS connection between two agents (ALPN nodemesh-tunnel/1).
//
// A frame is a 9-byte header — type (u8), stream id (u32), payload length (u32) — and the payload. DATA
// payloads are handed on in the slices they arrive in, never gathered into one buffer, so a 64 KiB
// frame costs no copy; control frames are small and gathered.

import { NodemeshError } from '../../lib/errors.js';

export const TUNNEL_ALPN = 'nodemesh-tunnel/1';
export const HEADER_BYTES = 9;
/** Largest DATA payload we send; larger ones from a peer are accepted up to MAX_PAYLOAD. */
export const MAX_DATA_FRAME = 64 * 1024;
const MAX_PAYLOAD = 1024 * 1024;
const MAX_CONTROL = 4096;

export const enum FrameType {
  /** Client opens a stream (ids odd, increasing). */
  Open = 1,
  Data = 2,
  /** No more data from the sender on this stream (half-close). */
  Fin = 3,
  /** Abort the stream; payload: a short reason. */
  Reset = 4,
  /** Credit: the receiver consumed this many bytes (u32 payload). */
  Window = 5,
  /** The server took an OPEN: the peer is alive and the stream exists (the client's dial succeeds on it). */
  Ack = 6,
  /** The server is draining: open no new streams on this tunnel (stream id 1, ignored). */
  GoAway = 7,
}

export const tunnelError = (message: string) => new NodemeshError('TUNNEL_PROTOCOL', message, 502);

export function header(type: FrameType, stream: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h[0] = type;
  h.writeUInt32BE(stream, 1);
  h.writeUInt32BE(length, 5);
  return h;
}

export interface FrameHandler {
  /** A whole control frame (OPEN, FIN, RESET, WINDOW). */
  control(type: FrameType, stream: number, payload: Buffer): void;
  /** Part of a DATA frame's payload, in arrival order. */
  data(stream: number, slice: Buffer): void;
}

/** An incremental frame parser: feed it the decrypted byte stream; it throws a TUNNEL_PROTOCOL error on bad framing. */
export class FrameParser {
  private head = Buffer.alloc(HEADER_BYTES);
  private headFill = 0;
  private type = 0;
  private stream = 0;
  /** Payload bytes of the current frame still to come. */
  private left = 0;
  private control: Buffer[] = [];

  constructor(private readonly on: FrameHandler) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.left === 0 && this.headFill < HEADER_BYTES) {
        const n = Math.min(HEADER_BYTES - this.headFill, chunk.length - pos);
        chunk.copy(this.head, this.headFill, pos, pos + n);
        this.headFill += n;
        pos += n;
        if (this.headFill < HEADER_BYTES) return;
        this.type = this.head[0];
        this.stream = this.head.readUInt32BE(1);
        this.left = this.head.readUInt32BE(5);
        if (this.type < FrameType.Open || this.type > FrameType.GoAway) throw tunnelError(`unknown frame type ${this.type}`);
        if (this.stream === 0) throw tunnelError('frame on stream 0');
        if (this.type === FrameType.Data ? this.left > MAX_PAYLOAD : this.left > MAX_CONTROL) throw tunnelError(`frame of ${this.left} bytes is over the limit`);
        if (this.left === 0) this.complete();
        continue;
      }
      const n = Math.min(this.left, chunk.length - pos);
      const slice = chunk.subarray(pos, pos + n);
      pos += n;
      this.left -= n;
      if (this.type === FrameType.Data) this.on.data(this.stream, slice);
      else this.control.push(slice);
      if (this.left === 0) this.complete();
    }
  }

  private complete(): void {
    this.headFill = 0;
    if (this.type !== FrameType.Data) {
      const payload = this.control.length === 1 ? this.control[0] : Buffer.concat(this.control);
      this.control = [];
      this.on.control(this.type, this.stream, payload);
    }
  }
}

// A multiplexed tunnel over one mTLS connection: streams that behave like sockets, with per-stream flow control.

import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { FrameParser, FrameType, header, MAX_DATA_FRAME, tunnelError } from './tunnel-frames.js';

/** Bytes a sender may have in flight on one stream before the receiver grants more (1 MiB stalled bulk: 2.1 vs 2.75 Gbit/s). */
const INITIAL_WINDOW = 4 * 1024 * 1024;
/** Streams per tunnel; the client opens another tunnel beyond it. */
const MAX_STREAMS = 1024;
/** Stream ids are odd and only grow: a tunnel is retired well before they run out. */
const MAX_STREAM_ID = 0x7fff_0000;
/**
 * Bytes received on a tunnel and not yet taken by the streams' readers. Above it the tunnel stops reading
 * its connection (TCP pushes back on the peer) until readers catch up: what one peer can make us hold
 * stays bounded whatever its streams and windows.
 */
const MAX_TUNNEL_BUFFERED = 64 * 1024 * 1024;
/** Refused streams (denied, draining) a tunnel may cause per 10 s before it is closed: each costs a RESET and a log line. */
const MAX_REFUSED_PER_10S = 1000;

/** One stream of a tunnel: a Duplex with a socket's shape where the byte pipe needs it. */
export class TunnelStream extends Duplex {
  bytesRead = 0;
  /** Credit left to send; writes wait for WINDOW frames when it runs out. */
  private sendWindow = INITIAL_WINDOW;
  private blocked?: { chunk: Buffer; cb: (e?: Error | null) => void };
  /** Bytes received and not yet credited back to the sender. */
  private unacked = 0;
  private wantMore = true;
  /** Set once the peer reset the stream: no RESET to send back on destroy. */
  private closedRemotely = false;
  private finReceived = false;
  private finSent = false;
  private ackWaiter?: { resolve: () => void; reject: (e: Error) => void };

  constructor(readonly id: number, private readonly session: TunnelSession) {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 });
    // A reset is reported by 'close'; whoever joins the stream adds its own error handling.
    this.on('error', () => undefined);
  }

  setNoDelay(): this {
    return this; // frames are written at once; there is no Nagle at this layer
  }

  // ---- what node:http's Agent asks of a pooled socket (keep-alive HTTP over a stream) ----

  /** Idle timeout in ms (0: none); 'timeout' is emitted after that long without traffic. */
  timeout = 0;
  private idleTimer?: NodeJS.Timeout;
  /** Last traffic: a data chunk only stamps it; the timer re-arms itself when it fires early (no timer work per chunk). */
  private lastActive = 0;

  setTimeout(ms: number, cb?: () => void): this {
    this.timeout = ms;
    if (cb) this.once('timeout', cb);
    this.lastActive = Date.now();
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (ms > 0 && !this.destroyed) this.armIdle(ms);
    return this;
  }

  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.timeout <= 0 || this.destroyed) return;
      const idle = Date.now() - this.lastActive;
      if (idle >= this.timeout) this.emit('timeout');
      else this.armIdle(this.timeout - idle);
    }, ms);
    this.idleTimer.unref();
  }

  setKeepAlive(): this {
    return this; // the tunnel's own connection carries TCP keep-alive
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.lastActive = Date.now();
    this.send(chunk, cb);
  }

  private send(chunk: Buffer, cb: (e?: Error | null) => void): void {
    let pos = 0;
    while (pos < chunk.length && this.sendWindow > 0) {
      const n = Math.min(chunk.length - pos, this.sendWindow, MAX_DATA_FRAME);
      this.session.writeFrame(FrameType.Data, this.id, chunk.subarray(pos, pos + n));
      this.sendWindow -= n;
      pos += n;
    }
    if (pos < chunk.length) {
      this.blocked = { chunk: chunk.subarray(pos), cb };
      return;
    }
    this.session.afterWrite(cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (!this.session.closed) this.session.writeFrame(FrameType.Fin, this.id);
    this.finSent = true;
    cb();
  }

  override _read(): void {
    this.wantMore = true;
    this.credit();
  }

  /** Resolves when the server acknowledged the OPEN; rejects if the stream ends first. */
  acknowledged(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.destroyed) return reject(new Error('stream closed before the peer answered'));
      this.ackWaiter = { resolve, reject };
    });
  }

  onAck(): void {
    const w = this.ackWaiter;
    this.ackWaiter = undefined;
    w?.resolve();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    clearTimeout(this.idleTimer);
    const w = this.ackWaiter;
    this.ackWaiter = undefined;
    w?.reject(err ?? new Error('stream closed before the peer answered'));
    // After our FIN a clean close needs no RESET (as TCP's close after shutdown): the peer keeps and
    // delivers what it already received.
    const clean = !err && this.finSent;
    if (!clean && !this.closedRemotely && !this.session.closed) this.session.writeFrame(FrameType.Reset, this.id, Buffer.from(err?.message.slice(0, 200) ?? 'closed'));
    this.session.forget(this.id);
    const b = this.blocked;
    this.blocked = undefined;
    b?.cb(err ?? new Error('stream closed'));
    cb(err);
  }

  /** Credit back what the reader consumed, in batches so WINDOW frames stay rare. */
  private credit(): void {
    if (this.wantMore && this.unacked >= INITIAL_WINDOW / 4 && !this.session.closed) {
      const p = Buffer.allocUnsafe(4);
      p.writeUInt32BE(this.unacked, 0);
      this.session.writeFrame(FrameType.Window, this.id, p);
      this.unacked = 0;
    }
  }

  // ---- from the session ----

  onData(slice: Buffer): void {
    if (this.finReceived) throw tunnelError(`data after FIN on stream ${this.id}`);
    this.bytesRead += slice.length;
    this.unacked += slice.length;
    this.lastActive = Date.now();
    if (this.unacked > INITIAL_WINDOW + MAX_DATA_FRAME) throw tunnelError(`stream ${this.id}: peer sent past its window`);
    if (!this.push(slice)) this.wantMore = false;
    this.session.received(slice.length);
    this.credit();
  }

  onFin(): void {
    this.finReceived = true;
    this.push(null);
  }

  onReset(reason: string): void {
    this.closedRemotely = true;
    // After the peer's FIN everything it sent is here: deliver it, only stop sending.
    if (this.finReceived) {
      // Output still waiting for window would wait for good (a reset peer grants none): it is dropped with the stream.
      if (this.blocked || this.writableLength > 0) {
        this.blocked = undefined;
        this.destroy();
        return;
      }
      if (!this.writableEnded) this.end();
      return;
    }
    this.destroy(new Error(`stream reset by peer: ${reason}`));
  }

  onWindow(n: number): void {
    this.sendWindow += n;
    const b = this.blocked;
    if (b && this.sendWindow > 0) {
      this.blocked = undefined;
      this.send(b.chunk, b.cb);
    }
  }
}

/**
 * Both ends of a tunnel. The client opens streams; the server is told of each with `onStream`. A framing
 * error or the connection's end destroys every stream.
 */
export class TunnelSession {
  private readonly streams = new Map<number, TunnelStream>();
  private nextId = 1;
  private lastOpened = 0;
  private refused = { since: Date.now(), count: 0 };
  /** Bytes received since the tunnel last added up what its streams hold. */
  private sinceCheck = 0;
  private resumeTimer?: NodeJS.Timeout;
  /** Server: draining, new OPENs are refused before they are acknowledged. Client: the peer said GOAWAY. */
  private goingAway = false;
  private readonly parser: FrameParser;
  private drainWaiters: ((e?: Error | null) => void)[] = [];
  closed = false;
  /** When the last stream ended (for idle reaping); 0 while streams are open. */
  idleSince = Date.now();

  constructor(
    readonly socket: TLSSocket,
    private readonly role: 'client' | 'server',
    private readonly onStream?: (s: TunnelStream) => void,
    private readonly onClose?: (err?: Error) => void,
  ) {
    socket.setNoDelay(true);
    this.parser = new FrameParser({
      control: (type, id, payload) => this.control(type, id, payload),
      data: (id, slice) => this.streams.get(id)?.onData(slice),
    });
    socket.on('data', (c: Buffer) => {
      try {
        this.parser.push(c);
      } catch (e) {
        this.close(e as Error);
      }
    });
    socket.on('drain', () => {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const cb of w) cb();
    });
    socket.on('error', (e) => this.close(e));
    socket.on('close', () => this.close());
    socket.on('end', () => socket.end());
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * The server refused a stream (denied, draining). A peer opening stream after refused stream would
   * make us queue RESETs and log lines without end: past a limit the tunnel is closed.
   */
  noteRefused(): void {
    const now = Date.now();
    if (now - this.refused.since > 10_000) this.refused = { since: now, count: 0 };
    if (++this.refused.count > MAX_REFUSED_PER_10S) this.close(tunnelError(`more than ${MAX_REFUSED_PER_10S} refused streams in 10 s`));
  }

  /** What the streams' readers have not taken yet (counted every MiB received, not per chunk). */
  private held(): number {
    let n = 0;
    for (const st of this.streams.values()) n += st.readableLength;
    return n;
  }

  received(n: number): void {
    this.sinceCheck += n;
    if (this.sinceCheck < 1024 * 1024 || this.resumeTimer) return;
    this.sinceCheck = 0;
    if (this.held() <= MAX_TUNNEL_BUFFERED) return;
    this.socket.pause();
    this.resumeTimer = setInterval(() => {
      if (!this.closed && this.held() > MAX_TUNNEL_BUFFERED / 2) return;
      clearInterval(this.resumeTimer);
      this.resumeTimer = undefined;
      if (!this.closed) this.socket.resume();
    }, 20);
    this.resumeTimer.unref();
  }

  /** No room for another stream: the pool opens a new tunnel and lets this one drain. */
  get full(): boolean {
    return this.goingAway || this.streams.size >= MAX_STREAMS || this.nextId > MAX_STREAM_ID;
  }

  /** Server: tell the client to open no more streams here; streams already open carry on. */
  goAway(): void {
    if (this.role !== 'server' || this.goingAway) return;
    this.goingAway = true;
    this.writeFrame(FrameType.GoAway, 1);
  }

  /** Opens a stream (client side). */
  open(): TunnelStream {
    if (this.role !== 'client' || this.closed || this.full) throw tunnelError('cannot open a stream on this tunnel');
    const id = this.nextId;
    this.nextId += 2;
    const s = new TunnelStream(id, this);
    this.streams.set(id, s);
    this.idleSince = 0;
    this.writeFrame(FrameType.Open, id);
    return s;
  }

  writeFrame(type: FrameType, id: number, payload?: Buffer): void {
    if (this.closed) return;
    if (!payload || payload.length === 0) {
      this.socket.write(header(type, id, 0));
      return;
    }
    this.socket.cork();
    this.socket.write(header(type, id, payload.length));
    this.socket.write(payload);
    this.socket.uncork();
  }

  /** Calls `cb` once the connection can take more (shared backpressure across the tunnel's streams). */
  afterWrite(cb: (e?: Error | null) => void): void {
    if (this.closed) return cb(new Error('tunnel closed'));
    if (this.socket.writableNeedDrain) this.drainWaiters.push(cb);
    else cb();
  }

  forget(id: number): void {
    this.streams.delete(id);
    if (this.streams.size === 0) this.idleSince = Date.now();
  }

  private control(type: FrameType, id: number, payload: Buffer): void {
    if (type === FrameType.Open) {
      if (this.role !== 'server') throw tunnelError('OPEN sent to a client');
      if (id % 2 !== 1 || id <= this.lastOpened) throw tunnelError(`bad stream id ${id} for OPEN: ids are odd and increase`);
      this.lastOpened = id;
      if (this.streams.size >= MAX_STREAMS || this.goingAway) {
        // Refused before the ACK: the client's dial fails and it tries another instance.
        this.writeFrame(FrameType.Reset, id, Buffer.from(this.goingAway ? 'draining' : 'too many streams'));
        return this.noteRefused();
      }
      const s = new TunnelStream(id, this);
      this.streams.set(id, s);
      this.idleSince = 0;
      this.writeFrame(FrameType.Ack, id);
      this.onStream?.(s);
      return;
    }
    if (type === FrameType.GoAway) {
      if (this.role !== 'client') throw tunnelError('GOAWAY sent to a server');
      this.goingAway = true;
      return;
    }
    const s = this.streams.get(id);
    if (!s) return; // a frame racing a reset: nothing to do
    if (type === FrameType.Ack) {
      if (this.role !== 'client') throw tunnelError('ACK sent to a server');
      s.onAck();
    } else if (type === FrameType.Fin) s.onFin();
    else if (type === FrameType.Reset) s.onReset(payload.toString('utf8'));
    else if (type === FrameType.Window) {
      if (payload.length !== 4) throw tunnelError('WINDOW payload must be 4 bytes');
      s.onWindow(payload.readUInt32BE(0));
    }
  }

  /** Ends the tunnel and every stream on it. */
  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.resumeTimer);
    for (const s of [...this.streams.values()]) s.destroy(err ?? new Error('tunnel closed'));
    this.streams.clear();
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of w) cb(new Error('tunnel closed'));
    this.socket.destroy();
    this.onClose?.(err);
  }
}

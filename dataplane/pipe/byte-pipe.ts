// Joins two sockets: bytes both ways with backpressure, half-close carried across, and one teardown for both.

import type { Duplex } from 'node:stream';

/** A socket, a TLS socket or a tunnel stream: what the pipe needs of each end. */
export type PipeEnd = Duplex & { bytesRead: number; setNoDelay(noDelay?: boolean): unknown };

export interface PipeResult { fromA: number; fromB: number }

/** Connection-level headers a proxy must not forward (RFC 9110 §7.6.1): shared by both HTTP-aware sides. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

/** How long a side that is still flushing gets after the other side closed. */
const FLUSH_TIMEOUT_MS = 30_000;

/**
 * Pipes `a` and `b` into each other. When one side ends its writes, the other side's write half is
 * ended too (half-close), so a client that shuts down its write side still gets the reply. Both
 * sockets must be created with allowHalfOpen. An error or reset on either side destroys both.
 */
export function joinSockets(a: PipeEnd, b: PipeEnd, onClose?: (r: PipeResult) => void): void {
  let closed = 0;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    onClose?.({ fromA: a.bytesRead, fromB: b.bytesRead });
  };
  const teardown = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', teardown);
  b.on('error', teardown);
  const closedOne = (other: PipeEnd) => (hadError: boolean) => {
    closed++;
    if (closed === 2) return finish();
    // One side is gone. If it left cleanly and the other side is still flushing what it sent before
    // (a tunnel stream waiting for window credit), let that finish first: tearing down now would drop
    // the tail of a response. Otherwise the other side cannot deliver anything more.
    if (!hadError && other.writableEnded && !other.writableFinished && !other.destroyed) {
      const t = setTimeout(teardown, FLUSH_TIMEOUT_MS);
      t.unref();
      other.once('finish', () => { clearTimeout(t); teardown(); });
      other.once('close', () => clearTimeout(t));
      return;
    }
    teardown();
  };
  a.once('close', closedOne(b));
  b.once('close', closedOne(a));
  // A proxy forwards what it has at once: Nagle's delay would add latency on every small response.
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
}

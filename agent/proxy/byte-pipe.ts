// Joins two sockets: bytes both ways with backpressure, half-close carried across, and one teardown for both.

import type { Duplex } from 'node:stream';

/** A socket, a TLS socket or a tunnel stream: what the pipe needs of each end. */
export type PipeEnd = Duplex & { bytesRead: number; setNoDelay(noDelay?: boolean): unknown };

export interface PipeResult { fromA: number; fromB: number }

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
  const closedOne = () => {
    closed++;
    if (closed === 2) finish();
    else {
      // One side is gone entirely; the other cannot deliver anything more.
      teardown();
    }
  };
  a.once('close', closedOne);
  b.once('close', closedOne);
  // A proxy forwards what it has at once: Nagle's delay would add latency on every small response.
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
}

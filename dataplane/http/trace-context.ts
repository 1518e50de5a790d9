// W3C Trace Context for requests through the mesh: each hop continues the caller's trace with a span id of its own (sampled flag kept), or starts one.

import { randomFillSync } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** Random bytes from a pool refilled 4 KiB at a time: one getrandom call per ~250 requests, not two per request. */
const pool = Buffer.alloc(4096);
let at = pool.length;
function randomHex(bytes: number): string {
  if (at + bytes > pool.length) {
    randomFillSync(pool);
    at = 0;
  }
  at += bytes;
  return pool.toString('hex', at - bytes, at);
}

/** The traceparent to send on: the same trace and flags with a new span id; a new unsampled trace when there is none (or it is malformed). */
export function nextTraceparent(incoming: string | string[] | undefined): string {
  const m = typeof incoming === 'string' ? TRACEPARENT.exec(incoming.trim().toLowerCase()) : null;
  const span = randomHex(8);
  if (m && m[1] !== 'ff' && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN) return `00-${m[2]}-${span}-${m[4]}`;
  return `00-${randomHex(16)}-${span}-00`;
}

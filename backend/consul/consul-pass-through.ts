// One request passed to Consul as it came and its answer taken back as Consul sent it: bytes both ways, no JSON decoding
// (KV values are binary; a lock's flags are uint64, which JSON numbers in JavaScript would round).

import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { NodemeshError } from '../../lib/errors.js';

export interface PassThroughReply { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** Longest a pass-through may take: a blocking query's 10-minute wait, its jitter and some slack. */
const MAX_MS = 11 * 60_000;
/** Largest answer taken back (a KV export or a snapshot of a big store): past it the request fails. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

export function passThrough(base: URL, method: string, pathAndQuery: string, body: Buffer | undefined, headers: Record<string, string>, signal?: AbortSignal): Promise<PassThroughReply> {
  return new Promise((resolve, reject) => {
    const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(new URL(pathAndQuery, base), { method, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) }, timeout: MAX_MS, signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_REPLY_BYTES) {
          res.destroy();
          reject(new NodemeshError('CONSUL_ERROR', `consul ${method} answered more than ${MAX_REPLY_BYTES} bytes`, 502));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => reject(e.name === 'AbortError' ? e : new NodemeshError('CONSUL_UNREACHABLE', `consul at ${base.origin} unreachable (${method}): ${e.message}`, 503)));
    req.end(body);
  });
}

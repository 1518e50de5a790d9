// HTTP/2 and gRPC helpers for the upstream listener: reading a short request whole, trailers without pseudo-headers, and gRPC status ↔ HTTP code.

import type { IncomingHttpHeaders, OutgoingHttpHeaders as H2Headers, ServerHttp2Stream } from 'node:http2';

/** gRPC status codes as the HTTP codes a route's RetryOnStatusCodes names (Envoy's mapping). */
export const GRPC_AS_HTTP: Record<number, number> = { 4: 504, 8: 429, 12: 501, 13: 500, 14: 503, 16: 401, 7: 403, 5: 404 };
/** And the other way, for the mesh's own answers to a gRPC client. */
export const HTTP_AS_GRPC: Record<number, number> = { 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14 };

/**
 * Reads a request up to `limit` bytes: all of it (`ended`), or what came so far, the rest left to pipe. A request
 * still open after a moment is a stream (a client waiting for answers before it ends): it is not held back.
 */
export function readUpTo(stream: ServerHttp2Stream, limit: number, settleMs = 20): Promise<{ chunks: Buffer[]; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => done(false), settleMs);
    const done = (ended: boolean) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      if (!ended) stream.pause();
      resolve({ chunks, ended });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size > limit) done(false);
    };
    const onEnd = () => done(true);
    stream.on('data', onData);
    stream.once('end', onEnd);
    if (stream.readableEnded) done(true);
  });
}

/** Trailers as received carry no pseudo-headers; drop any, as sendTrailers refuses them. */
export function stripPseudo(h: IncomingHttpHeaders): H2Headers {
  const out: H2Headers = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) out[k] = v;
  return out;
}

// The HTTP/2 front end of an upstream listener: a workload's stream (a gRPC call or an h2c request) as an Exchange, and the answer with its trailers written back.

import { constants as h2, type IncomingHttpHeaders, type OutgoingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import { PassThrough, type Readable } from 'node:stream';
import { HOP_BY_HOP } from '../pipe/byte-pipe.js';
import { HTTP_AS_GRPC, readUpTo, stripPseudo } from '../http/h2-streams.js';
import type { Exchange, UpstreamAnswer } from '../http/l7-exchange.js';

export function h2Exchange(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, remoteAddress: string | undefined): Exchange {
  stream.on('error', () => undefined);
  const plain: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) plain[k] = v;
  if (headers[':authority'] !== undefined) plain.host = String(headers[':authority']);
  const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
  /** What readBody took from a body that did not end: it goes first when the body streams. */
  let prefix: Buffer[] = [];
  return {
    method: String(headers[':method'] ?? 'GET'),
    target: String(headers[':path'] ?? '/'),
    headers: plain,
    remoteAddress,
    grpc,
    empty: stream.endAfterHeaders,
    // A request still open after a moment is a stream (a client waiting for answers before it ends): not held back.
    async readBody(limit) {
      const got = await readUpTo(stream, limit);
      if (got.ended) return Buffer.concat(got.chunks);
      prefix = got.chunks;
      return undefined;
    },
    body(): Readable {
      if (!prefix.length) return stream;
      const joined = new PassThrough();
      for (const c of prefix) joined.write(c);
      prefix = [];
      stream.pipe(joined);
      return joined;
    },
    answer(status, message, code) {
      if (stream.destroyed) return;
      if (stream.headersSent) return void stream.close(h2.NGHTTP2_INTERNAL_ERROR);
      // A gRPC client reads errors from grpc-status: a trailers-only answer, as a gRPC server would give.
      if (grpc) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(HTTP_AS_GRPC[status] ?? 2), 'grpc-message': encodeURIComponent(message), 'x-nodemesh-error': code }, { endStream: true });
        return;
      }
      stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-nodemesh-error': code });
      stream.end(`${message}\n`);
    },
    respond(up: UpstreamAnswer) {
      if (stream.destroyed) {
        up.discard();
        return Promise.resolve();
      }
      const resp: H2Headers = { ':status': up.status };
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) resp[k] = v;
      return new Promise<void>((resolve) => {
        stream.once('close', () => {
          if (!up.body.readableEnded) up.discard();
          resolve();
        });
        up.body.on('error', () => { if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR); });
        // A trailers-only answer (a gRPC error: grpc-status already in the headers) ends with its headers; anything
        // else may end with trailers.
        if (up.endAfterHeaders) return void stream.respond(resp, { endStream: true });
        stream.respond(resp, { waitForTrailers: true });
        // No trailers came: an empty trailing HEADERS frame ends the stream cleanly (close() would reset it).
        stream.once('wantTrailers', () => stream.sendTrailers(stripPseudo(up.trailers() ?? {})));
        up.body.pipe(stream);
      });
    },
  };
}

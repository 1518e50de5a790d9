// The HTTP/1.1 front end of an upstream listener: a workload's request as an Exchange, and the answer written back.

import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { HOP_BY_HOP } from '../pipe/byte-pipe.js';
import type { Exchange, UpstreamAnswer } from '../http/l7-exchange.js';

export function h1Exchange(req: IncomingMessage, res: ServerResponse): Exchange {
  // Node's parser has checked the framing: a length, chunked, or no body.
  const declared = Number(req.headers['content-length'] ?? (req.headers['transfer-encoding'] ? Infinity : 0));
  return {
    method: req.method ?? 'GET',
    target: req.url ?? '/',
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
    grpc: false,
    empty: declared === 0,
    readBody: (limit) => (declared <= limit ? readAll(req) : Promise.resolve(undefined)),
    body: () => req,
    answer(status, message, code) {
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain', 'x-nodemesh-error': code }).end(`${message}\n`);
      else res.destroy();
    },
    respond(up: UpstreamAnswer) {
      const out: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      res.writeHead(up.status, out);
      return new Promise<void>((resolve) => {
        up.body.pipe(res);
        up.body.once('end', resolve);
        up.body.once('error', () => { res.destroy(); resolve(); });
        res.once('close', () => { up.body.destroy(); resolve(); });
      });
    },
  };
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

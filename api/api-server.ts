// The HTTP API's server: the router behind Node's HTTP server, a listen failure in words, and a graceful close.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { NodemeshError } from '../lib/errors.js';
import { listenServer } from '../lib/listen-server.js';
import type { Router } from './http-router.js';

/** How long a graceful close waits for busy connections before cutting them. */
const FORCE_CLOSE_MS = 10_000;

export interface ApiServer {
  host: string;
  port: number;
  /** Stops accepting, ends blocking queries, closes idle connections at once and busy ones after their answer (at most 10 s). */
  close(): Promise<void>;
}

export async function startApiServer(router: Router, o: { host: string; port: number; log: Logger }): Promise<ApiServer> {
  const server = createServer({ requestTimeout: 60_000, headersTimeout: 30_000 }, (req, res) => {
    router.handle(req, res).catch((e: Error) => {
      o.log.error({ err: e.stack }, 'request failed outside its handler');
      res.destroy();
    });
  });
  await listenServer(server, o.port, o.host).catch((e: NodeJS.ErrnoException) => {
    throw new NodemeshError('HTTP_LISTEN_FAILED', `cannot listen on ${o.host}:${o.port}: ${e.code ?? e.message}${e.code === 'EADDRINUSE' ? ' (another agent running? pick another --http-port)' : ''}`, 1);
  });
  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    host: bound.address,
    port: bound.port,
    close: () => closing ??= (async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      router.abortAll();
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), FORCE_CLOSE_MS);
      await closed;
      clearTimeout(force);
    })(),
  };
}

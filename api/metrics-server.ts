// The metrics listener (ports.metrics): plain HTTP, GET /metrics and nothing else, so a cluster's Prometheus can scrape
// the node IP without reaching the API.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { NodemeshError } from '../lib/errors.js';
import { listenServer } from '../lib/listen-server.js';
import { sendError, sendText } from './http-router.js';

export interface MetricsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(registry: Registry, o: { host: string; port: number; log: Logger }): Promise<MetricsServer> {
  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'API_BAD_METHOD', 'the metrics listener is read-only: GET /metrics', { Allow: 'GET, HEAD' });
    if (path !== '/metrics') return sendError(res, 404, 'API_NOT_FOUND', 'only /metrics is served here; the API is on the HTTP port');
    registry.metrics().then(
      (text) => sendText(res, 200, req.method === 'HEAD' ? '' : text, { 'Content-Type': registry.contentType }),
      (e: Error) => {
        o.log.error({ err: e.message }, 'metrics collection failed');
        sendError(res, 500, 'METRICS_FAILED', 'collecting the metrics failed: see the agent log');
      },
    );
  });
  await listenServer(server, o.port, o.host).catch((e: NodeJS.ErrnoException) => {
    throw new NodemeshError('METRICS_LISTEN_FAILED', `cannot listen for metrics on ${o.host}:${o.port}: ${e.code ?? e.message} (pick another --metrics-port, or -1 to turn it off)`, 1);
  });
  const bound = server.address() as AddressInfo;
  o.log.info({ metrics: `${bound.address}:${bound.port}` }, 'metrics listener open');
  return {
    host: bound.address,
    port: bound.port,
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

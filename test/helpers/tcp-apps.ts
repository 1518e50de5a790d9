// Workloads for data-plane tests: an echo app that counts what reaches it, and a client round trip from a chosen loopback address.

import { connect, createServer, type Server, type Socket } from 'node:net';

export interface App { server: Server; port: number; connections: number; bytes: number }

/** An echo app that counts what reaches it; ends its reply when the client half-closes. */
export async function echoApp(host: string): Promise<App> {
  const app: App = { server: createServer({ allowHalfOpen: true }), port: 0, connections: 0, bytes: 0 };
  app.server.on('connection', (s: Socket) => {
    app.connections++;
    s.on('data', (c: Buffer) => { app.bytes += c.length; });
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => app.server.listen(0, host, r));
  app.port = (app.server.address() as { port: number }).port;
  return app;
}


/** Connects from `from` to the upstream port, writes `data`, half-closes, and resolves with the whole reply. */
export function roundTrip(from: string, port: number, data: Buffer | string): Promise<{ reply: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: '127.0.0.1', port, localAddress: from, allowHalfOpen: true }, () => s.end(data));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', () => resolve({ reply: Buffer.concat(chunks) }));
    s.on('error', (e) => resolve({ reply: Buffer.concat(chunks), error: e.message }));
  });
}

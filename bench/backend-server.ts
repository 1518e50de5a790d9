// Benchmark backend, run as its own process: a tiny HTTP server and a byte sink, the same for every path measured.

import { createServer as httpServer } from 'node:http';
import { createServer as tcpServer } from 'node:net';

const host = process.argv[2] ?? '127.0.0.1';
const body = Buffer.from('hello from the backend\n');
const http = httpServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
// The sink reads everything and, when the client half-closes, answers with the byte count.
const sink = tcpServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on('data', (c: Buffer) => { n += c.length; });
  s.on('end', () => s.end(`${n}\n`));
  s.on('error', () => s.destroy());
});
http.listen(0, host, () => sink.listen(0, host, () => {
  const a = http.address() as { port: number };
  const b = sink.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ http: a.port, sink: b.port })}\n`);
}));
process.on('SIGTERM', () => process.exit(0));

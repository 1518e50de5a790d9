// Opening a listener as a promise: resolves once it listens, rejects with the bind error (and leaves no error handler behind).

import type { Server } from 'node:net';

/** Listens on `host:port` (0: any free port). A caller that wants a coded error maps the rejection. */
export function listenServer(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

// Closing a listener (and its connections) without letting one stuck connection stall the data plane's reconcile loop.

import type { Server } from 'node:net';

/**
 * Stops accepting at once and waits for the server's close callback, but no longer than `maxWaitMs`:
 * the caller has already destroyed the connections it knows of, and a straggler must not block the
 * next listener change.
 */
export function closeServer(server: Server, maxWaitMs = 1000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, maxWaitMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Closes a listener and every connection it still has (a listener's close). */
export async function closeListener(server: Server | undefined, open: Set<{ destroy(): void }>): Promise<void> {
  for (const s of open) s.destroy();
  open.clear();
  if (server) await closeServer(server);
}

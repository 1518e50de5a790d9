// A port that was free a moment ago on a loopback address (for listeners a test asks the agent to open).

import { createServer } from 'node:net';

/**
 * `taken`: ports already handed out for one set-up; a port in it is never returned again and the new one is added,
 * so several ports picked in a row are distinct (the kernel may give a just-closed port 0 twice).
 */
export async function freePort(host = '127.0.0.1', taken?: Set<number>): Promise<number> {
  for (;;) {
    const s = createServer();
    await new Promise<void>((r, j) => { s.once('error', j); s.listen(0, host, r); });
    const port = (s.address() as { port: number }).port;
    await new Promise((r) => s.close(r));
    if (!taken) return port;
    if (!taken.has(port)) { taken.add(port); return port; }
  }
}

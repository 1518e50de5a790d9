// Circuit breaking per instance: at most MaxConnections requests in flight (an HTTP/1.1 connection carries one at a
// time), up to MaxPendingRequests more waiting for a slot (bounded by the request's deadline), the rest shed.

import { ProxyAnswer } from '../http/proxy-answer.js';

interface Gate { active: number; waiting: { go: () => void; gone: boolean }[] }

export class InstanceGates {
  private readonly gates = new Map<string, Gate>();

  /** Waits for a slot of instance `key`; resolves with its release; throws 503 (overflow) or 504 (waited too long). */
  async acquire(key: string, maxConnections: number, maxPending: number, timeoutMs: number): Promise<() => void> {
    if (!maxConnections) return () => undefined;
    let g = this.gates.get(key);
    if (!g) this.gates.set(key, (g = { active: 0, waiting: [] }));
    const gate = g;
    if (gate.active >= maxConnections) {
      const pending = gate.waiting.reduce((n, w) => n + (w.gone ? 0 : 1), 0);
      if (maxPending && pending >= maxPending) {
        throw new ProxyAnswer(503, `upstream overflow: ${pending} requests waiting for a connection (MaxPendingRequests ${maxPending})`, 'UPSTREAM_OVERFLOW');
      }
      const entry = { go: () => undefined as void, gone: false };
      const timedOut = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => { entry.gone = true; resolve(true); }, timeoutMs);
        entry.go = () => { clearTimeout(t); resolve(false); };
        gate.waiting.push(entry);
      });
      if (timedOut) throw new ProxyAnswer(504, 'upstream request timeout (waiting for a connection)', 'UPSTREAM_TIMEOUT');
    } else gate.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The slot passes to the next waiter still there; with none, it is free.
      let next = gate.waiting.shift();
      while (next?.gone) next = gate.waiting.shift();
      if (next) next.go();
      else gate.active--;
    };
  }
}

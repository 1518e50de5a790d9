// Replicated records and announcements a peer sent that this agent refused: counted, and logged once per subject and reason.

import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

/** At most this many (set, subject, reason) keys are remembered as logged; then the memory starts over. */
const MAX_LOGGED = 4096;

export class RefusedRecords {
  private readonly total: Counter;
  private readonly logged = new Set<string>();

  constructor(registry: Registry, private readonly log: Logger) {
    this.total = new Counter({
      name: 'nodemesh_replication_refused_total',
      help: 'Replicated records and announcements refused: unsigned, signed by the wrong authority, or invalid.',
      labelNames: ['set'], registers: [registry],
    });
  }

  /** A bound function: stores and the replicator are handed it as their refusal callback. */
  readonly report = (set: string, subject: string, reason: string, from = '?'): void => {
    this.total.inc({ set });
    const key = `${set}\0${subject}\0${reason}`;
    if (this.logged.has(key)) return;
    if (this.logged.size > MAX_LOGGED) this.logged.clear();
    this.logged.add(key);
    this.log.warn({ code: 'REPLICATED_STATE_REFUSED', set, subject, from, reason }, 'refused replicated state from a peer: it is not applied (logged once per subject and reason)');
  };
}

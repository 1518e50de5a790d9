// This agent's own certificate for talking to its peers (the peer endpoint): signed by its CA for its node, renewed at
// half its life and re-signed when the CA or the trusted roots change.

import type { Logger } from 'pino';
import { ChangeFeed } from '../../lib/change-feed.js';
import type { TrustBundle } from './trust-bundle.js';

/** What a TLS context of the peer endpoint needs. */
export interface PeerCredential {
  /** The agent certificate, then the intermediates up to (not including) the root. */
  certPem: string;
  keyPem: string;
  /** The roots a peer's chain may end in. */
  roots: string[];
  trustDomain: string;
}

export class AgentCredential {
  /** Fires when the credential changed (renewed, re-signed after a CA change). */
  readonly feed = new ChangeFeed();
  private cred!: PeerCredential;
  private timer?: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  private constructor(private readonly bundle: TrustBundle, private readonly o: { datacenter: string; node: string; ttlMs: number; log: Logger }) {
    this.unsubscribe = bundle.feed.subscribe(() => void this.issue().catch((e: Error) => o.log.error({ err: e.message }, 'agent certificate not re-issued after a CA change')));
  }

  static async start(bundle: TrustBundle, o: { datacenter: string; node: string; ttlMs: number; log: Logger }): Promise<AgentCredential> {
    const c = new AgentCredential(bundle, o);
    await c.issue();
    return c;
  }

  current(): PeerCredential {
    return this.cred;
  }

  private async issue(): Promise<void> {
    const ca = this.bundle.ca;
    const leaf = await ca.signAgent(this.o.datacenter, this.o.node, this.o.ttlMs);
    this.cred = { certPem: `${[leaf.certPem, ...ca.intermediates].map((p) => p.trim()).join('\n')}\n`, keyPem: leaf.keyPem, roots: this.bundle.pems(), trustDomain: ca.trustDomain };
    clearTimeout(this.timer);
    // At most 2^31-1 ms (24.8 days): a longer delay would fire at once, and re-issue in a loop.
    this.timer = setTimeout(() => void this.issue().catch((e: Error) => this.o.log.error({ err: e.message }, 'agent certificate not renewed')), Math.min(this.o.ttlMs / 2, 2 ** 31 - 1));
    this.timer.unref();
    this.feed.notify();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.unsubscribe();
    this.feed.close();
  }
}

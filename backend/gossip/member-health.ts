// Pool members' liveness as catalog node health: failed nodes critical (their tunnels cut), left nodes removed, long-failed nodes reaped.

import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog-store.js';
import { NodeState } from '../../membership/wire-messages.js';
import type { GossipMembership } from './gossip-membership.js';

export interface MemberHealthInputs {
  catalog: Catalog;
  /** This agent's node name (never judged by itself). */
  self: string;
  /** How long a failed node is kept, critical, before it is forgotten (Consul: 72 h). */
  reconnectTimeoutMs: number;
  /** This agent's trust domain: a member announcing another is warned about once. */
  trustDomain: () => string;
  /** A node failed: once per failure. */
  onNodeFailed(name: string, addr: string): void;
  log: Logger;
}

export class MemberHealth {
  /** Failed nodes whose tunnels were closed (once per failure). */
  private readonly cutOff = new Set<string>();
  private readonly warnedDomains = new Set<string>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly o: MemberHealthInputs, private readonly gossip: () => GossipMembership | undefined) {}

  /** Re-reads the pool now and every half reconnect_timeout (between 1 and 15 s). */
  start(): void {
    this.timer = setInterval(() => this.sync(), Math.min(15_000, Math.max(1000, this.o.reconnectTimeoutMs / 2)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A bound function: the pool calls it on every membership change. */
  readonly sync = (): void => {
    const g = this.gossip();
    if (!g) return;
    const { catalog, log } = this.o;
    for (const n of g.serf.memberlist.nodes.values()) {
      if (n.name === this.o.self) continue;
      if (n.state !== NodeState.dead) this.cutOff.delete(n.name);
      else if (!this.cutOff.has(n.name)) {
        this.cutOff.add(n.name);
        this.o.onNodeFailed(n.name, n.addr);
        log.info({ node: n.name, addr: n.addr }, 'node failed: its tunnels are closed so callers move to live instances');
      }
      // Left by memberlist, by Serf's intent or by a force-leave of a failed member.
      if (g.serf.hasLeft(n.name)) catalog.removeNode(n.name);
      else if (n.state === NodeState.dead) {
        if (Date.now() - n.stateChange > this.o.reconnectTimeoutMs) {
          catalog.removeNode(n.name);
          g.serf.memberlist.nodes.delete(n.name);
          this.cutOff.delete(n.name);
          log.info({ node: n.name }, 'reaped a node failed for longer than reconnect_timeout');
        } else catalog.setNodeHealth(n.name, 'critical', 'Agent not live or unreachable');
      } else catalog.setNodeHealth(n.name, 'passing', 'Agent alive and reachable');
    }
    const ours = this.o.trustDomain();
    for (const mb of g.serf.members()) {
      const td = mb.tags.td;
      if (!td || mb.status !== 'alive' || td === ours || this.warnedDomains.has(mb.name)) continue;
      this.warnedDomains.add(mb.name);
      log.warn({ node: mb.name, theirTrustDomain: td, ourTrustDomain: ours },
        'a pool member uses another trust domain: mesh traffic between us will be refused; give every agent the same CA (ca_file/ca_key_file)');
    }
  };
}

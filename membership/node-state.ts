// The node table's state machine: alive, suspect and dead news, Lifeguard suspicion timers, and refuting accusations of us.

import { addrBytes, ipOf, selfOf, type MemberlistContext, type NodeRecord } from './memberlist-context.js';
import { Suspicion, suspicionTimeoutMs } from './suspicion.js';
import * as m from './wire-messages.js';
import { NodeState } from './wire-messages.js';

export class NodeStates {
  private readonly suspicions = new Map<string, Suspicion>();

  constructor(private readonly ctx: MemberlistContext) {}

  private aliveMsg(n: NodeRecord): Buffer {
    return m.alive({ Addr: addrBytes(n.addr), Incarnation: n.incarnation, Meta: n.meta, Node: n.name, Port: n.port, Vsn: n.vsn });
  }

  onAlive(a: m.Alive): void {
    const { cfg } = this.ctx;
    if (this.ctx.leaving && a.Node === cfg.name) return;
    if (a.Vsn.length >= 3 && (a.Vsn[0] === 0 || a.Vsn[1] === 0 || a.Vsn[0] > a.Vsn[1])) return;
    if (a.Vsn.length > 0 && a.Vsn.length < 6) return;
    // A nameless node, or one without a usable address or port, could never be probed: ignore it.
    if (a.Node === '' || (a.Addr.length !== 4 && a.Addr.length !== 16) || a.Port === 0) return;
    const addr = ipOf(a.Addr);
    let n = this.ctx.nodes.get(a.Node);
    if (a.Node === cfg.name) {
      const self = selfOf(this.ctx);
      if (a.Incarnation < self.incarnation) return;
      if (a.Incarnation === self.incarnation && a.Meta?.equals(self.meta) && a.Vsn.equals(self.vsn)) return;
      return this.refute(a.Incarnation);
    }
    const isNew = !n;
    if (!n) {
      n = { name: a.Node, addr, port: a.Port, meta: a.Meta ?? Buffer.alloc(0), vsn: a.Vsn, incarnation: 0, state: NodeState.dead, stateChange: Date.now() };
      this.ctx.nodes.set(a.Node, n);
    } else if ((n.addr !== addr || n.port !== a.Port) && n.state !== NodeState.left && n.state !== NodeState.dead) {
      this.ctx.log.warn({ node: a.Node, have: `${n.addr}:${n.port}`, got: `${addr}:${a.Port}` }, 'gossip: conflicting address for a node name');
      return;
    }
    if (!isNew && a.Incarnation <= n.incarnation) return;
    // Accepted news is passed on, whether it came by gossip or by push/pull (as memberlist does).
    this.ctx.broadcasts.queue(m.alive(a), a.Node);
    const wasDown = n.state === NodeState.dead || n.state === NodeState.left;
    const metaChanged = !n.meta.equals(a.Meta ?? Buffer.alloc(0));
    this.endSuspicion(a.Node);
    Object.assign(n, { addr, port: a.Port, meta: a.Meta ?? Buffer.alloc(0), vsn: a.Vsn, incarnation: a.Incarnation });
    if (n.state !== NodeState.alive) Object.assign(n, { state: NodeState.alive, stateChange: Date.now() });
    if (wasDown) this.ctx.delegate.notifyJoin?.(n);
    else if (metaChanged) this.ctx.delegate.notifyUpdate?.(n);
  }

  onSuspect(s: m.Suspect): void {
    const { cfg } = this.ctx;
    const n = this.ctx.nodes.get(s.Node);
    if (!n || s.Incarnation < n.incarnation) return;
    // Already suspected: an independent accuser shortens the timer (Lifeguard) and is passed on.
    const running = this.suspicions.get(s.Node);
    if (running) {
      if (running.confirm(s.From)) this.ctx.broadcasts.queue(m.suspect(s), s.Node);
      return;
    }
    if (n.state !== NodeState.alive) return;
    if (s.Node === cfg.name) return this.refute(s.Incarnation);
    this.ctx.broadcasts.queue(m.suspect(s), s.Node);
    Object.assign(n, { incarnation: s.Incarnation, state: NodeState.suspect, stateChange: Date.now() });
    // Wait for SuspicionMult - 2 confirmations, unless the pool is too small to give them.
    const members = this.ctx.nodes.size;
    const k = members - 2 < cfg.suspicionMult - 2 ? 0 : cfg.suspicionMult - 2;
    const min = suspicionTimeoutMs(cfg.suspicionMult, members, cfg.probeIntervalMs);
    const incarnation = s.Incarnation;
    this.suspicions.set(s.Node, new Suspicion(s.From, k, min, cfg.suspicionMaxTimeoutMult * min, (confirmations) => {
      this.suspicions.delete(s.Node);
      if (n.state !== NodeState.suspect || n.incarnation !== incarnation) return;
      this.ctx.log.info({ node: n.name, confirmations }, 'gossip: suspect node declared failed');
      this.onDead({ From: cfg.name, Incarnation: incarnation, Node: n.name });
    }));
  }

  private endSuspicion(node: string): void {
    this.suspicions.get(node)?.cancel();
    this.suspicions.delete(node);
  }

  onDead(d: m.Dead): void {
    const n = this.ctx.nodes.get(d.Node);
    if (!n || d.Incarnation < n.incarnation || n.state === NodeState.dead || n.state === NodeState.left) return;
    this.endSuspicion(d.Node);
    if (d.Node === this.ctx.cfg.name && !this.ctx.leaving) return this.refute(d.Incarnation);
    this.ctx.broadcasts.queue(m.dead(d), d.Node);
    Object.assign(n, { incarnation: d.Incarnation, state: d.From === d.Node ? NodeState.left : NodeState.dead, stateChange: Date.now() });
    this.ctx.delegate.notifyLeave?.(n);
  }

  private refute(accused: number): void {
    const self = selfOf(this.ctx);
    this.ctx.awareness.apply(1); // being accused hints that we are the slow one
    self.incarnation = Math.max(self.incarnation + 1, accused + 1);
    this.ctx.broadcasts.queue(this.aliveMsg(self), self.name);
  }

  /** New tags: broadcast alive with a higher incarnation (Serf's member-update). */
  updateMeta(): void {
    const self = selfOf(this.ctx);
    self.meta = this.ctx.delegate.nodeMeta();
    self.incarnation++;
    this.ctx.broadcasts.queue(this.aliveMsg(self), self.name);
  }

  /** Stops every running suspicion timer (shutdown). */
  cancelSuspicions(): void {
    for (const t of this.suspicions.values()) t.cancel();
  }
}

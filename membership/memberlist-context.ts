// What the parts of a memberlist node share: its config, the node table, delegate and log, and address helpers.

import { isIPv4 } from 'node:net';
import type { Awareness } from './awareness.js';
import type { BroadcastQueue } from './broadcast-queue.js';
import { NodeState } from './wire-messages.js';

export interface GossipLog {
  debug(o: object, msg: string): void;
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

export interface MemberlistDelegate {
  /** Our node's metadata (Serf tags), at most 512 bytes. */
  nodeMeta(): Buffer;
  /** A user message (type 8 payload) arrived. */
  notifyMsg(msg: Buffer): void;
  /** Extra broadcasts (already wrapped as user messages) to piggyback on a packet to `to` (addr:port). */
  getBroadcasts(overhead: number, budget: number, to: string): Buffer[];
  localState(join: boolean): Buffer;
  mergeRemoteState(state: Buffer, join: boolean): void;
  /** What our acks carry (Serf: this node's network coordinate); nothing when absent. */
  ackPayload?(): Buffer | null;
  /** A direct probe of `n` was acked after `rttMs`, the ack carrying `payload` (Serf: that node's coordinate). */
  notifyPingComplete?(n: NodeRecord, rttMs: number, payload: Buffer): void;
  notifyJoin?(n: NodeRecord): void;
  notifyLeave?(n: NodeRecord): void;
  notifyUpdate?(n: NodeRecord): void;
}

export interface NodeRecord {
  name: string;
  addr: string;
  port: number;
  meta: Buffer;
  vsn: Buffer;
  incarnation: number;
  state: number;
  stateChange: number;
}

export interface MemberlistConfig {
  name: string;
  bindAddr: string;
  /** The address peers reach us at (defaults to bindAddr; needed when binding 0.0.0.0). */
  advertiseAddr?: string;
  port: number;
  /** Gossip keys: the first encrypts, any decrypts. The array is shared with the stream readers and changed in place by GossipKeyring (keyring.ts): never replace it. */
  keys?: Buffer[];
  compression?: boolean;
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  gossipIntervalMs?: number;
  gossipNodes?: number;
  suspicionMult?: number;
  /** Upper bound of a suspicion (before confirmations shorten it), as a multiple of the base timeout. */
  suspicionMaxTimeoutMult?: number;
  awarenessMaxMultiplier?: number;
  retransmitMult?: number;
  pushPullIntervalMs?: number;
  tcpTimeoutMs?: number;
  gossipToTheDeadMs?: number;
  /** How often to try a push/pull with one failed (not left) member, so a healed partition joins up again (Serf's ReconnectInterval). */
  reconnectIntervalMs?: number;
}

/** The memberlist's own state, owned by the Memberlist and handed to each of its parts. */
export interface MemberlistContext {
  readonly cfg: Required<MemberlistConfig>;
  readonly nodes: Map<string, NodeRecord>;
  readonly broadcasts: BroadcastQueue;
  readonly awareness: Awareness;
  readonly delegate: MemberlistDelegate;
  readonly log: GossipLog;
  /** Packets and bytes dropped for bad framing, bad crypto or bad msgpack. */
  readonly dropped: { packets: number; decrypt: number };
  /** UDP traffic counters, for metrics and the convergence benchmark. */
  readonly traffic: { packetsSent: number; bytesSent: number; packetsReceived: number; bytesReceived: number };
  /** Set by leave(): our own death is news to pass on, not an accusation to refute. */
  leaving: boolean;
  /** Set by shutdown(): nothing more is sent. */
  stopped: boolean;
}

/** Our own entry in the node table (present once the memberlist has started). */
export function selfOf(ctx: MemberlistContext): NodeRecord {
  return ctx.nodes.get(ctx.cfg.name)!;
}

/** Every other member not known to be dead or gone. */
export function livePeers(ctx: MemberlistContext): NodeRecord[] {
  return [...ctx.nodes.values()].filter((n) => n.name !== ctx.cfg.name && n.state !== NodeState.dead && n.state !== NodeState.left);
}

export function addrBytes(addr: string): Buffer {
  return isIPv4(addr) ? Buffer.from(addr.split('.').map(Number)) : Buffer.alloc(16);
}

export function ipOf(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return '0.0.0.0';
}

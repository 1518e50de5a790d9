// The agent's place in the gossip pool: its Serf node, keyring and keyring file, joins and retry-joins, and Consul's members view.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join as joinPath } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { NodemeshError } from '../../lib/errors.js';
import { GOSSIP_KEY_SIZES, GossipKeyring, parseGossipKey, type KeyringEntry } from '../../membership/keyring.js';
import { SerfNode, type Member } from '../../membership/serf-layer.js';
import { writePrivate } from '../../lib/private-file.js';
import type { AgentConfig } from '../../config/agent-config.js';
import { PeerSnapshotFile } from '../../membership/gossip-snapshot.js';

const STATUS_CODE: Record<Member['status'], number> = { alive: 1, leaving: 2, left: 3, failed: 4 };

export interface ConsulMember {
  Name: string; Addr: string; Port: number; Tags: Record<string, string>; Status: number;
  ProtocolMin: number; ProtocolMax: number; ProtocolCur: number; DelegateMin: number; DelegateMax: number; DelegateCur: number;
}

const keyringPath = (dataDir: string) => joinPath(dataDir, 'serf', 'local.keyring');

/** Writes the keys, primary first, as Consul's keyring file: a JSON array of base64 keys, mode 0600, written and renamed. */
function saveKeys(path: string, keys: Buffer[]): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writePrivate(path, JSON.stringify(keys.map((k) => k.toString('base64'))));
}

/** The gossip keys: the data dir's keyring file wins over `encrypt` once it exists (as Consul), so a restart keeps the key. */
function loadKeys(config: AgentConfig, dataDir: string, log: Logger): Buffer[] {
  const path = keyringPath(dataDir);
  if (existsSync(path)) {
    let keys: string[];
    try {
      keys = JSON.parse(readFileSync(path, 'utf8')) as string[];
      if (!Array.isArray(keys) || keys.length === 0) throw new NodemeshError('KEYRING_INVALID', 'expected a JSON array of base64 keys', 2);
      for (const k of keys) {
        if (typeof k !== 'string' || !GOSSIP_KEY_SIZES.includes(Buffer.from(k, 'base64').length)) throw new NodemeshError('KEYRING_INVALID', 'every key must be base64 of 16, 24 or 32 bytes', 2);
      }
    } catch (e) {
      throw new NodemeshError('KEYRING_INVALID', `keyring file ${path} is unreadable (${(e as Error).message}); fix or remove it`, 2);
    }
    if (config.encrypt && config.encrypt !== keys[0]) log.warn({ path }, 'encrypt is set but the keyring file in the data dir takes precedence');
    return keys.map((k) => Buffer.from(k, 'base64'));
  }
  if (!config.encrypt) return [];
  const keys = [parseGossipKey(config.encrypt)];
  saveKeys(path, keys);
  return keys;
}

export class GossipMembership {
  private retryTimer?: NodeJS.Timeout;
  private snapshotTimer?: NodeJS.Timeout;
  private stopped = false;
  private readonly keyring: GossipKeyring;

  private constructor(readonly serf: SerfNode, private readonly log: Logger, private readonly snapshot: PeerSnapshotFile, dataDir: string) {
    const path = keyringPath(dataDir);
    // Written before the change takes effect: a keyring that cannot be saved stays as it was, and a restart finds what ran.
    this.keyring = new GossipKeyring(serf.memberlist.cfg.keys, (next) => {
      try {
        saveKeys(path, next);
      } catch (e) {
        throw new NodemeshError('KEYRING_SAVE_FAILED', `cannot write the keyring file ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the keyring is unchanged; check the data dir's permissions and free space`, 500);
      }
    });
  }

  static async start(opts: {
    config: AgentConfig; dataDir: string; advertise: string; httpPort: number; nodeId: string; log: Logger; onChange: () => void;
    /** Our SPIFFE trust domain, published as the `td` tag so a mismatched pool is noticed. */
    trustDomain: string;
    /** Extra Serf tags (a policy writer's `pw`: the port it takes forwarded writes on). */
    tags?: Record<string, string>;
    app?: SerfNode['app'];
  }): Promise<GossipMembership> {
    const { config, log } = opts;
    const keys = loadKeys(config, opts.dataDir, log);
    const ref: { current?: GossipMembership } = {};
    const glog = {
      debug: (o: object, msg: string) => log.debug(o, msg),
      info: (o: object, msg: string) => log.info(o, msg),
      warn: (o: object, msg: string) => log.warn(o, msg),
    };
    const serf = new SerfNode(
      { name: config.node, bindAddr: config.bind, advertiseAddr: opts.advertise, port: config.serfLanPort, keys },
      { role: 'node', dc: config.datacenter, id: opts.nodeId, http_port: String(opts.httpPort), td: opts.trustDomain, vsn: '2', vsn_min: '2', vsn_max: '3', build: 'nodemesh', ...opts.tags },
      // Every membership change also refreshes the peers snapshot (saved only when the live peers differ), so an
      // agent killed right after it joined still finds its peers on restart.
      glog, () => {
        opts.onChange();
        const g = ref.current;
        if (g && !g.stopped) g.snapshot.record(g.livePeers());
      },
    );
    serf.app = opts.app;
    try {
      await serf.start();
    } catch (e) {
      throw new NodemeshError('GOSSIP_LISTEN_FAILED', `cannot listen for gossip on ${config.bind}:${config.serfLanPort}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (pick another --serf-lan-port)`, 1);
    }
    const g = new GossipMembership(serf, log, new PeerSnapshotFile(opts.dataDir, log), opts.dataDir);
    const previous = await g.snapshot.load();
    ref.current = g;
    log.info({ gossip: `${config.bind}:${serf.memberlist.port}`, encrypted: keys.length > 0 }, 'gossip listening');
    if (config.join.length) {
      const n = await serf.join(config.join);
      if (n === 0) {
        await serf.shutdown();
        throw new NodemeshError('JOIN_FAILED', `Failed to join any of ${config.join.join(', ')}: check the addresses, and that --encrypt matches the pool's key (or use --retry-join)`, 1);
      }
      log.info({ joined: n }, 'joined the gossip pool');
      g.snapshot.record(g.livePeers());
    }
    if (config.retryJoin.length) g.retryJoin(config.retryJoin, 1000);
    if (previous?.peers.length) g.rejoin(previous, config.rejoinAfterLeave);
    g.snapshotTimer = setInterval(() => g.snapshot.record(g.livePeers()), 5000);
    g.snapshotTimer.unref();
    return g;
  }

  private livePeers(): string[] {
    return this.serf.members().filter((mb) => mb.status === 'alive' && mb.name !== this.serf.memberlist.cfg.name).map((mb) => `${mb.addr}:${mb.port}`);
  }

  /** Joins the members of the previous run in the background (Serf's snapshot rejoin), unless we left on purpose. */
  private rejoin(previous: { left: boolean; peers: string[] }, afterLeave: boolean): void {
    if (previous.left && !afterLeave) {
      this.log.info({ peers: previous.peers.length }, 'left the pool gracefully last time: not rejoining previous members (set rejoin_after_leave or --rejoin-after-leave to rejoin)');
      return;
    }
    void this.serf.join(previous.peers).then((n) => {
      if (n > 0) {
        this.snapshot.record(this.livePeers());
        this.log.info({ joined: n, of: previous.peers.length }, 'rejoined the gossip pool from the peers snapshot');
      }
      else this.log.warn({ peers: previous.peers }, 'no member from the peers snapshot answered');
    });
  }

  /** Keeps trying to join with backoff (1 s, doubling, at most 30 s) until one address answers. */
  private retryJoin(addrs: string[], delayMs: number): void {
    if (this.stopped) return;
    void this.serf.join(addrs).then((n) => {
      if (n > 0) {
        this.snapshot.record(this.livePeers());
        return this.log.info({ joined: n }, 'retry-join: joined the gossip pool');
      }
      this.log.warn({ addrs, retryInMs: delayMs }, 'retry-join: no address answered yet');
      this.retryTimer = setTimeout(() => this.retryJoin(addrs, Math.min(delayMs * 2, 30_000)), delayMs);
      this.retryTimer.unref();
    });
  }

  private readonly pulling = new Set<string>();

  /** Joins through these agents now (PUT /v1/agent/join); how many answered. */
  async join(addrs: string[]): Promise<number> {
    const n = await this.serf.join(addrs);
    if (n > 0) this.snapshot.record(this.livePeers());
    return n;
  }

  /** Announces a failed member as left (PUT /v1/agent/force-leave); false for a name the pool does not know. */
  forceLeave(node: string): boolean {
    return this.serf.forceLeave(node);
  }

  /** A push/pull with one member right now (it announced state newer than ours); one at a time per member. */
  pull(node: string): void {
    const n = this.serf.memberlist.nodes.get(node);
    if (!n || this.pulling.has(node) || this.stopped) return;
    this.pulling.add(node);
    this.serf.memberlist.pushPullWith(n.addr, n.port, false)
      .catch((e: Error) => this.log.debug({ node, err: e.message }, 'pull from member failed'))
      .finally(() => this.pulling.delete(node));
  }

  get port(): number {
    return this.serf.memberlist.port;
  }

  // ---- keyring: this agent's keys only (Consul applies these to the whole pool by Serf query); keys are never logged ----

  /** This agent's gossip keys, primary first. */
  listKeys(): KeyringEntry[] {
    return this.keyring.list();
  }

  /** Adds a key this agent decrypts with (it still encrypts with its primary key); saved to the keyring file. */
  installKey(key: string): void {
    this.logKeyChange('installed', 'already installed', this.keyring.install(key));
  }

  /** Makes an installed key the one this agent encrypts with; saved to the keyring file. */
  useKey(key: string): void {
    this.logKeyChange('made primary', 'already primary', this.keyring.use(key));
  }

  /** Removes a key that is not primary; saved to the keyring file. */
  removeKey(key: string): void {
    this.logKeyChange('removed', 'not installed', this.keyring.remove(key));
  }

  private logKeyChange(done: string, unchanged: string, changed: boolean): void {
    const keys = this.serf.memberlist.cfg.keys.length;
    if (changed) this.log.info({ keys }, `gossip keyring: a key was ${done}`);
    else this.log.info({ keys }, `gossip keyring: the key was ${unchanged}, nothing changed`);
  }

  /** /v1/agent/members, in Consul's shape. */
  members(): ConsulMember[] {
    return this.serf.members().map((mb) => {
      const vsn = this.serf.memberlist.nodes.get(mb.name)?.vsn ?? Buffer.alloc(6);
      return {
        Name: mb.name, Addr: mb.addr, Port: mb.port, Tags: mb.tags, Status: STATUS_CODE[mb.status],
        ProtocolMin: vsn[0] ?? 0, ProtocolMax: vsn[1] ?? 0, ProtocolCur: vsn[2] ?? 0, DelegateMin: vsn[3] ?? 0, DelegateMax: vsn[4] ?? 0, DelegateCur: vsn[5] ?? 0,
      };
    }).sort((a, b) => a.Name.localeCompare(b.Name));
  }

  async leave(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.snapshotTimer);
    this.snapshot.record(this.livePeers());
    await this.snapshot.markLeft();
    await this.serf.leave();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.snapshotTimer);
    await this.serf.shutdown();
  }
}

/** Gossip metrics: members by status, UDP packets and bytes each way, dropped input, Lifeguard health. */
export function registerGossipMetrics(registry: Registry, g: GossipMembership): void {
  new Gauge({
    name: 'nodemesh_gossip_members', help: 'Members of the gossip pool by status.', labelNames: ['status'], registers: [registry],
    collect() {
      const counts: Record<string, number> = { alive: 0, leaving: 0, left: 0, failed: 0 };
      for (const m of g.serf.members()) counts[m.status]++;
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  // Running totals kept by the memberlist, exposed as counters (read at scrape time).
  const totals = (name: string, help: string, label: string, read: () => Record<string, number>) => new Counter({
    name, help, labelNames: [label], registers: [registry],
    collect() {
      this.reset();
      for (const [v, n] of Object.entries(read())) this.inc({ [label]: v }, n);
    },
  });
  const t = g.serf.memberlist.traffic;
  totals('nodemesh_gossip_udp_packets_total', 'Gossip UDP packets sent and received.', 'direction', () => ({ sent: t.packetsSent, received: t.packetsReceived }));
  totals('nodemesh_gossip_udp_bytes_total', 'Gossip UDP bytes sent and received.', 'direction', () => ({ sent: t.bytesSent, received: t.bytesReceived }));
  const dropped = g.serf.memberlist.dropped;
  totals('nodemesh_gossip_dropped_packets_total', 'Gossip input dropped: undecryptable, or malformed.', 'reason', () => ({ decrypt: dropped.decrypt, malformed: dropped.packets }));
  new Gauge({
    name: 'nodemesh_gossip_health_score', help: 'Lifeguard local health score (0 is healthy; probe timeouts scale by score + 1).', registers: [registry],
    collect() { this.set(g.serf.memberlist.awareness.health); },
  });
}

// The gossip backend: the pool's own CA, leaves and trust bundle, signed replicated intentions and config entries, policy writes, and the Serf pool that carries them.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig } from '../../config/agent-config.js';
import { CatalogReplicator } from '../../catalog/replication.js';
import type { RecordSeal } from '../../catalog/lww-record-store.js';
import { CertificateAuthority } from '../../identity/ca/certificate-authority.js';
import { LeafCerts } from '../../identity/ca/leaf-certs.js';
import { TrustBundle } from '../../identity/ca/trust-bundle.js';
import { PoolAuthority, loadPolicyCredential } from '../../identity/authority/pool-authority.js';
import { signedPolicySet } from '../../identity/authority/signed-policy-set.js';
import { withDefault, type IntentionSource } from '../../policy/authorizer.js';
import { ConfigEntryStore } from '../../policy/config-entry-store.js';
import { IntentionStore } from '../../policy/intention-store.js';
import type { Coordinate } from '../../membership/network-coordinate.js';
import { isNodemeshError, NodemeshError } from '../../lib/errors.js';
import { writePrivate } from '../../lib/private-file.js';
import type { BackendInputs, JoinInputs, MeshBackend } from '../mesh-backend.js';
import { GossipMembership, registerGossipMetrics, type ConsulMember } from './gossip-membership.js';
import { MemberHealth } from './member-health.js';
import { ForwardedPolicyWrites, startPolicyEndpoint } from './policy-forwarding.js';
import { LocalPolicyWrites, type PolicyWrites } from './policy-writes.js';
import { RefusedRecords } from './refused-records.js';
import { UserEventLog } from './user-event-log.js';

/** First byte of nodemesh's own gossip messages: outside Serf's types (0–9), so Serf logs and skips them. */
const NODEMESH_GOSSIP_TYPE = 0x6e;
/** A record from an unknown signer prompts a pull from its writer's node at most this often per node. */
const UNKNOWN_SIGNER_PULL_MS = 5000;

export class GossipBackend implements MeshBackend {
  readonly kind = 'gossip' as const;
  readonly bindsNodeIdentities = true;
  readonly intentions: IntentionSource;
  readonly entries: MeshBackend['entries'];
  /** Intention and config-entry writes: signed here on a policy writer, else forwarded to one. */
  readonly writes: PolicyWrites;
  /** The Serf pool, once joined. */
  gossip: GossipMembership | undefined;
  /** Consul's user events on the pool, once joined. */
  events: UserEventLog | undefined;
  private readonly refused: RefusedRecords;
  private readonly policySets: ReturnType<typeof signedPolicySet>[];
  private policyEndpoint?: { port: number; close(): Promise<void> };
  private health?: MemberHealth;
  private readonly unsubscribe: (() => void)[] = [];
  private syncedWithPeer = false;
  private caFiles: { caFile?: string; caKeyFile?: string };
  private lastCaText: string;
  /** The configuration as of the last reload. */
  private current: AgentConfig;

  private constructor(
    private readonly o: BackendInputs,
    readonly leafCerts: LeafCerts,
    readonly store: IntentionStore,
    readonly bundle: TrustBundle,
    readonly entryStore: ConfigEntryStore,
    readonly authority: PoolAuthority,
  ) {
    const { config, log } = o;
    const defaultPolicy = config.defaultIntentionPolicy ?? (config.dev ? 'allow' : 'deny');
    this.intentions = withDefault(store, defaultPolicy);
    this.entries = { feed: entryStore.feed, get index() { return entryStore.index; }, get: (k, n) => entryStore.get(k, n) };
    this.caFiles = { caFile: config.caFile, caKeyFile: config.caKeyFile };
    this.lastCaText = caText(config);
    this.current = config;
    this.refused = new RefusedRecords(o.registry, log);
    // Records the stores refuse as the API would (from a peer, or found in their files at load): never applied, logged once.
    store.onRefused = entryStore.onRefused = this.refused.report;
    // A record from a signer not learned yet prompts a pull from its writer's node, rate-limited per node: a peer sending
    // records under made-up signers cannot turn each into a push/pull.
    const lastPull = new Map<string, number>();
    const events = {
      unknownSigner: (node: string) => {
        const now = Date.now();
        if (now - (lastPull.get(node) ?? 0) < UNKNOWN_SIGNER_PULL_MS) return;
        if (lastPull.size > 4096) lastPull.clear();
        lastPull.set(node, now);
        this.gossip?.pull(node);
      },
      refused: this.refused.report,
    };
    this.policySets = [signedPolicySet('intentions', store, authority.verifier, events), signedPolicySet('config-entries', entryStore, authority.verifier, events)];
    this.writes = authority.policySigner(bundle.ca)
      ? new LocalPolicyWrites(store, entryStore, config.operatorToken ?? config.aclToken)
      : new ForwardedPolicyWrites(
        () => (this.gossip?.serf.members() ?? []).filter((m) => m.status === 'alive' && /^\d{1,5}$/.test(m.tags.pw ?? '') && m.name !== config.node)
          .map((m) => ({ name: m.name, addr: m.addr, port: Number(m.tags.pw) })),
        bundle,
        (records, chain) => {
          authority.verifier.learn(chain);
          for (const r of records) this.policySets.find((ps) => ps.name === r?.set)?.merge([r.sig]);
        },
        log,
      );
  }

  /** Opens the CA, the stores and the policy authority from the data dir; a policy writer also opens its endpoint. */
  static async open(o: BackendInputs): Promise<GossipBackend> {
    const { config, dataDir, log } = o;
    const ca = await CertificateAuthority.open({ dataDir, caFile: config.caFile, caKeyFile: config.caKeyFile });
    const leafCerts = new LeafCerts(ca, { datacenter: config.datacenter, ttlMs: config.leafCertTtlMs, log });
    const store = new IntentionStore(join(dataDir, 'intentions.json'), config.node);
    const bundle = TrustBundle.open(ca, dataDir, config.caTrustedRootsFile);
    const entries = new ConfigEntryStore(join(dataDir, 'config-entries.json'), config.node);
    const closeAll = async () => {
      bundle.stop();
      leafCerts.stop();
      await store.close();
      await entries.close();
    };
    let b: GossipBackend;
    try {
      await store.load();
      await entries.load();
      // Who may sign what: this node's entry with its CA key; pool-wide policy with a policy credential (or the root key).
      const policyCred = config.policyCertFile && config.policyKeyFile ? loadPolicyCredential(config.policyCertFile, config.policyKeyFile, ca.trustDomain) : undefined;
      const authority = new PoolAuthority(bundle, ca, config.node, policyCred, log);
      b = new GossipBackend(o, leafCerts, store, bundle, entries, authority);
    } catch (e) {
      await closeAll();
      throw e;
    }
    if (useSigner(b.authority, ca, store, entries)) {
      const resealed = await store.sealUnsigned() + await entries.sealUnsigned();
      if (resealed) log.info({ records: resealed }, 'signed policy records written before signing existed here');
    }
    if (ca.holdsRootKey && config.caFile && !config.dev) {
      log.warn({ code: 'AUTHORITY_ROOT_KEY_ON_NODE' }, 'this agent holds the pool\'s root key: every node given it is a policy authority and can sign any identity; use per-node intermediates (`nodemesh ca issue-intermediate --node`) and a policy writer (`nodemesh ca issue-policy`)');
    }
    const credential = b.authority.policy;
    if (credential) {
      try {
        b.policyEndpoint = await startPolicyEndpoint({ bind: config.bind, port: config.policyPort, credential, writes: b.writes, log });
      } catch (e) {
        await b.close();
        throw e;
      }
      log.info({ policyWriter: credential.name, listen: `${config.bind}:${b.policyEndpoint.port}` }, 'policy writer: signing intentions and config entries for the pool, taking forwarded writes');
    }
    return b;
  }

  get ca(): CertificateAuthority {
    return this.bundle.ca;
  }

  get trust(): TrustBundle {
    return this.bundle;
  }

  get leaves(): LeafCerts {
    return this.leafCerts;
  }

  /** The pool's members, in Consul's shape. */
  members(): ConsulMember[] {
    return this.gossip?.members() ?? [];
  }

  /** Serf's network coordinates: this node's and each member's that has acked one of our probes. */
  coordinates(): Map<string, Coordinate> {
    return this.gossip?.serf.coordinates() ?? new Map();
  }

  /** Joins the pool: the catalog and the policy sets replicate over it; members' liveness becomes node health. */
  async join(j: JoinInputs): Promise<void> {
    const { config, dataDir, catalog, log } = this.o;
    const replicator = new CatalogReplicator(catalog, config.node, this.policySets, {
      broadcast: (body, key) => this.gossip?.serf.broadcastApp(body, key),
      pull: (node) => this.gossip?.pull(node),
      isMember: (node) => this.gossip?.serf.memberlist.nodes.has(node) === true && !this.gossip.serf.hasLeft(node),
      refused: (what, node, reason) => this.refused.report(what, node, reason),
    }, this.authority);
    const health = this.health = new MemberHealth({
      catalog, self: config.node, reconnectTimeoutMs: config.reconnectTimeoutMs, trustDomain: () => this.bundle.trustDomain, onNodeFailed: j.onNodeFailed, log,
    }, () => this.gossip);
    health.start();
    this.gossip = await GossipMembership.start({
      config, dataDir, advertise: this.o.node.Address, httpPort: j.httpPort, nodeId: this.o.node.ID, log, onChange: health.sync, trustDomain: this.bundle.trustDomain,
      tags: { ...j.tags, ...(this.policyEndpoint ? { pw: String(this.policyEndpoint.port) } : {}) },
      app: {
        type: NODEMESH_GOSSIP_TYPE,
        onMessage: (b) => replicator.onMessage(b),
        localState: () => replicator.localState(),
        mergeState: (b) => { replicator.mergeState(b); this.syncedWithPeer = true; health.sync(); },
      },
    });
    registerGossipMetrics(this.o.registry, this.gossip);
    const events = this.events = new UserEventLog(this.gossip.serf.events, catalog, config.node);
    this.gossip.serf.onUserEvent = (e) => events.receive(e);
    for (const feed of [catalog.feed, this.store.feed, this.entryStore.feed]) this.unsubscribe.push(feed.subscribe(() => replicator.localChanged()));
    replicator.localChanged();
  }

  notReady(): string[] {
    const { join: seeds, retryJoin } = this.o.config;
    if (!this.gossip) return ['gossip is not started yet'];
    // Alone by config (no join, no retry_join): nothing to wait for.
    if ((seeds.length || retryJoin.length) && !this.syncedWithPeer) return [`catalog not yet synced with any peer (joining ${[...seeds, ...retryJoin].join(', ')})`];
    return [];
  }

  posture(): ReturnType<MeshBackend['posture']> {
    const { config, dataDir } = this.o;
    return {
      backend: 'gossip',
      caKeyFile: config.caKeyFile ?? join(dataDir, 'ca', 'root-key.pem'),
      authority: { holdsRootKey: this.bundle.ca.holdsRootKey, policyWriter: this.authority.policy?.name },
    };
  }

  async leave(): Promise<void> {
    this.health?.stop();
    const { log } = this.o;
    await this.gossip?.leave().catch((e: Error) => log.warn({ err: e.message }, 'gossip leave failed'));
    await this.gossip?.shutdown().catch((e: Error) => log.warn({ err: e.message }, 'gossip shutdown failed'));
  }

  async close(): Promise<void> {
    this.health?.stop();
    for (const u of this.unsubscribe.splice(0)) u();
    await this.policyEndpoint?.close();
    this.policyEndpoint = undefined;
    this.leafCerts.stop();
    this.bundle.stop();
    await this.store.close();
    await this.entryStore.close();
  }

  /** A new CA (files changed, or replaced in place) re-issues every leaf; the old roots stay trusted for one leaf lifetime. */
  async reload(next: AgentConfig): Promise<void> {
    const { dataDir } = this.o;
    this.current = next;
    const text = caText(next);
    const changedCa = next.caFile !== this.caFiles.caFile || next.caKeyFile !== this.caFiles.caKeyFile || text !== this.lastCaText;
    this.lastCaText = text;
    if (!changedCa) {
      this.bundle.setExtraRoots(next.caTrustedRootsFile);
      return;
    }
    await this.activate(await CertificateAuthority.open({ dataDir, caFile: next.caFile, caKeyFile: next.caKeyFile }), next);
    this.caFiles = { caFile: next.caFile, caKeyFile: next.caKeyFile };
  }

  /** Makes `nextCa` the signing CA if it differs: old roots stay trusted for one leaf lifetime, leaves are re-issued. */
  private async activate(nextCa: CertificateAuthority, next: AgentConfig): Promise<void> {
    const { bundle } = this;
    if (nextCa.rootPems[0] === bundle.ca.rootPems[0] && nextCa.intermediates.join() === bundle.ca.intermediates.join()) return;
    this.o.log.warn({ from: bundle.ca.trustDomain, to: nextCa.trustDomain }, 'CA rotation: new root active, old root trusted for one leaf lifetime; re-issuing leaves');
    bundle.rotate(nextCa, next.caTrustedRootsFile, this.o.config.leafCertTtlMs + 3_600_000);
    await this.leafCerts.rotate(nextCa);
    this.authority.rotate(nextCa);
    useSigner(this.authority, nextCa, this.store, this.entryStore);
  }

  /**
   * Consul's `connect ca set-config`, for this agent: a new signing CA (a root, or an intermediate followed by its chain)
   * replaces this agent's CA files (ca_file/ca_key_file, or the data dir's own CA) and is applied as a reload applies
   * changed files. Unless forced, it must end in a root this agent already trusts — its own, or one given in
   * ca_trusted_roots_file — since peers refuse leaves under a root they were not given: the operator distributes the
   * new root first (docs/security.md). Other agents are not touched: the root key stays with the operator.
   */
  async replaceSigningCa(chainPem: string, keyPem: string, force: boolean): Promise<void> {
    // A bad certificate or key is the caller's mistake here (at start-up the same check is a config error).
    const next = await CertificateAuthority.fromPem(chainPem, keyPem, 'RootCert').catch((e: unknown) => {
      throw isNodemeshError(e) ? new NodemeshError(e.code, e.message, 400) : e;
    });
    const trusted = this.bundle.pems();
    if (!force && !next.rootPems.some((p) => trusted.includes(p))) {
      throw new NodemeshError('CA_ROOT_NOT_TRUSTED', 'the new CA ends in a root this agent does not trust yet, so its peers would refuse the leaves it signs: add that root to ca_trusted_roots_file on every agent and reload them first (or set ForceWithoutCrossSigning to switch anyway)', 400);
    }
    const { caFile, caKeyFile } = this.current.caFile && this.current.caKeyFile
      ? this.current : { caFile: join(this.o.dataDir, 'ca', 'root-cert.pem'), caKeyFile: join(this.o.dataDir, 'ca', 'root-key.pem') };
    try {
      const tmp = `${caFile!}.${process.pid}.tmp`;
      writeFileSync(tmp, chainPem, { mode: 0o644 });
      writePrivate(caKeyFile!, keyPem);
      renameSync(tmp, caFile!);
    } catch (e) {
      throw new NodemeshError('CA_FILES_READ_ONLY', `cannot write the CA files (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): where they are mounted read-only, rotate by replacing the files and reloading (docs/security.md)`, 409);
    }
    this.o.log.warn({ caFile, force }, 'CA replaced through the API (connect ca set-config)');
    this.lastCaText = caText(this.current);
    await this.activate(next, this.current);
  }

  describe(): Record<string, string> {
    return this.gossip ? { gossip: `${this.o.config.bind}:${this.gossip.port}` } : {};
  }
}

/** Seals the policy stores' local writes with this agent's policy key for `ca` (none: they stay unsigned); whether it has one. */
function useSigner(authority: PoolAuthority, ca: CertificateAuthority, ...stores: { sealer?: (body: string) => RecordSeal }[]): boolean {
  const signer = authority.policySigner(ca);
  for (const s of stores) s.sealer = signer ? (body) => signer.signBlob(body) : undefined;
  return signer !== undefined;
}

/** The CA files' contents, so a reload notices a file replaced in place. */
function caText(c: AgentConfig): string {
  try {
    return c.caFile && c.caKeyFile ? readFileSync(c.caFile, 'utf8') + readFileSync(c.caKeyFile, 'utf8') : '';
  } catch {
    return '';
  }
}

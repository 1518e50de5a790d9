// Binds a peer leaf to the catalog: a leaf signed by a node's intermediate speaks only for a service that node hosts.

import { X509Certificate, type KeyObject } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog-store.js';
import { NodemeshError } from '../lib/errors.js';
import { foldName } from '../model/service-names.js';
import type { NodeEntry } from '../model/catalog-types.js';
import { parseAuthorityUri } from './authority-ids.js';
import type { TrustSource } from './trust-sources.js';
import { uriSans, type ServiceIdentity } from './spiffe/spiffe-id.js';

/** How long a node's leaves for a service stay good after the catalog stops listing the service there. */
export const DEFAULT_BINDING_GRACE_MS = 10_000;

/** The metrics label every refusal of this kind is counted under (bounded). */
export const UNBOUND_REASON = 'identity_unbound';

/** Which node's intermediate vouched for an accepted identity, and for which service (lower case). */
export interface BoundTo { node: string; service: string }

/** An identity accepted on the strength of a node's intermediate carries what it was bound to; root-signed ones do not. */
export type BoundIdentity = ServiceIdentity & { boundTo?: BoundTo };

export type RefusalCode = 'IDENTITY_UNBOUND' | 'ISSUER_NAMES_NO_NODE' | 'ISSUER_UNTRUSTED' | 'ISSUER_OTHER_DOMAIN';

/** Why a verified leaf is not accepted for its service. */
export class IdentityRefusal extends NodemeshError {
  constructor(code: RefusalCode, message: string, readonly service: string, readonly node?: string) {
    super(code, message, 403);
    this.name = 'IdentityRefusal';
  }
}

export interface IdentityBindingOptions {
  /** Default 10 s. */
  graceMs?: number;
  log?: Logger;
  /** Where refusals are counted (the data plane's nodemesh_proxy_denied_total). */
  metrics?: { denied: { inc(labels: { direction: 'inbound' | 'outbound'; source: string; destination: string; reason: string }): void } };
  now?: () => number;
}

type IssuerVerdict =
  | { kind: 'root'; key: KeyObject }
  | { kind: 'node'; key: KeyObject; node: string; trustDomain: string }
  | { kind: 'refused'; code: RefusalCode; reason: string };

/** Remembered issuer and leaf verdicts (by certificate fingerprint): a pool has one intermediate per node. */
const MAX_ISSUERS = 4096;
const MAX_LEAVES = 16_384;
/** Intermediates between a leaf's issuer and the root, at most. */
const MAX_DEPTH = 4;

const NAMES_NO_NODE = 'issuer names no node: re-issue it with nodemesh ca issue-intermediate --node';

/** The lower-case service names a node hosts: its services, and its connect-proxies' destinations. */
function hostedOn(entry: NodeEntry): Set<string> {
  const out = new Set<string>();
  for (const s of entry.services.values()) {
    out.add(foldName(s.Service));
    if (s.Kind === 'connect-proxy' && s.Proxy?.DestinationServiceName) out.add(foldName(s.Proxy.DestinationServiceName));
  }
  return out;
}

const pairKey = (node: string, service: string) => `${foldName(node)}\0${foldName(service)}`;

function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}

/**
 * The catalog's view of which node hosts which service (node names compare case-insensitively, as the record
 * verifier's do), the grace after a service leaves a node, and the check of a peer chain against it.
 */
export class IdentityBinding {
  readonly graceMs: number;
  private readonly now: () => number;
  /** Per catalog node (exact name): the entry seen, its version, what it hosts. */
  private readonly perNode = new Map<string, { entry: NodeEntry; version: number; hosts: Set<string> }>();
  /** Lower-case node name → exact names (one, unless a pool spells a node two ways). */
  private readonly spellings = new Map<string, Set<string>>();
  /** Lower-case node name → what it hosts now. */
  private readonly hosted = new Map<string, Set<string>>();
  /** node\0service → when the catalog stopped listing it. */
  private readonly goneAt = new Map<string, number>();
  private stamp = -1;
  private syncQueued = false;
  private expiryTimer?: NodeJS.Timeout;
  private expiryAt = Infinity;
  private readonly revokeListeners = new Set<() => void>();
  private readonly issuers = new Map<string, { trustIndex: number; verdict: IssuerVerdict }>();
  /** Leaf fingerprint → the issuer fingerprint whose key verified its signature. */
  private readonly leafSignedBy = new Map<string, string>();
  private roots: { index: number; byPrint: Map<string, X509Certificate> } = { index: -1, byPrint: new Map() };
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly catalog: Catalog, private readonly trust: TrustSource, private readonly opts: IdentityBindingOptions = {}) {
    this.graceMs = opts.graceMs ?? DEFAULT_BINDING_GRACE_MS;
    this.now = opts.now ?? Date.now;
    this.sync();
    // Coalesced: a burst of catalog changes is looked at once; a check in between syncs on its own.
    this.unsubscribe = catalog.feed.subscribe(() => {
      if (this.syncQueued || this.closed) return;
      this.syncQueued = true;
      setImmediate(() => {
        this.syncQueued = false;
        if (!this.closed) this.sync();
      });
    });
  }

  /** Called when a service's grace on a node ran out: identities bound to it must be looked at again. */
  onRevoked(fn: () => void): () => void {
    this.revokeListeners.add(fn);
    return () => this.revokeListeners.delete(fn);
  }

  /**
   * A verified leaf (the handshake checked its chain) for identity `id`: undefined when a trust anchor signed it
   * (root-key holders are full authorities), what it is bound to when a node's intermediate signed it and that
   * node hosts the service (or did within the grace), or why it is refused.
   */
  check(cert: PeerCertificate, id: ServiceIdentity): BoundTo | undefined | IdentityRefusal {
    const leaf = cert as DetailedPeerCertificate;
    const issuer = leaf.issuerCertificate;
    if (!issuer || !issuer.raw || issuer === leaf || issuer.fingerprint256 === leaf.fingerprint256) {
      return new IdentityRefusal('ISSUER_UNTRUSTED', `leaf for ${id.service} comes without its issuer`, id.service);
    }
    const verdict = this.issuer(issuer);
    if (verdict.kind === 'refused') return new IdentityRefusal(verdict.code, verdict.reason, id.service);
    if (this.leafSignedBy.get(leaf.fingerprint256) !== issuer.fingerprint256) {
      let ok = false;
      try {
        ok = new X509Certificate(leaf.raw).verify(verdict.key);
      } catch {
        ok = false;
      }
      if (!ok) return new IdentityRefusal('ISSUER_UNTRUSTED', `leaf for ${id.service} is not signed by the issuer in its chain`, id.service);
      setBounded(this.leafSignedBy, leaf.fingerprint256, issuer.fingerprint256, MAX_LEAVES);
    }
    if (verdict.kind === 'root') return undefined;
    if (verdict.trustDomain !== foldName(id.trustDomain)) {
      return new IdentityRefusal('ISSUER_OTHER_DOMAIN', `issuer of node ${verdict.node} is in trust domain ${verdict.trustDomain}, the leaf in ${id.trustDomain}`, id.service, verdict.node);
    }
    const bound = { node: verdict.node, service: foldName(id.service) };
    if (this.holds(bound)) return bound;
    return new IdentityRefusal('IDENTITY_UNBOUND', `leaf for ${id.service} is signed by node ${verdict.node}'s intermediate, but the catalog lists no ${id.service} on ${verdict.node}`, id.service, verdict.node);
  }

  /** Whether a binding still holds: the node hosts the service, or stopped less than the grace ago. */
  holds(b: BoundTo): boolean {
    this.sync();
    const node = foldName(b.node);
    if (this.hosted.get(node)?.has(b.service)) return true;
    const gone = this.goneAt.get(pairKey(node, b.service));
    return gone !== undefined && this.now() - gone < this.graceMs;
  }

  /** Logs (warn) and counts a refusal or a revocation; names the node, the service and why, never a key. */
  report(r: { direction: 'inbound' | 'outbound'; source: string; destination: string; peer?: string; refusal: IdentityRefusal | string; revoked?: boolean }): void {
    this.opts.metrics?.denied.inc({ direction: r.direction, source: r.source, destination: r.destination, reason: UNBOUND_REASON });
    const refusal = r.refusal;
    const detail = typeof refusal === 'string' ? { reason: refusal } : { code: refusal.code, node: refusal.node, service: refusal.service, reason: refusal.message };
    this.opts.log?.warn({ direction: r.direction, source: r.source, destination: r.destination, peer: r.peer, ...detail },
      r.revoked ? 'open connection revoked: its identity is no longer bound to a node that hosts it' : `${r.direction} connection refused: peer identity not bound to the catalog`);
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    clearTimeout(this.expiryTimer);
    this.revokeListeners.clear();
  }

  // ---- issuers ----

  private currentRoots() {
    if (this.roots.index !== this.trust.index) {
      const byPrint = new Map<string, X509Certificate>();
      for (const pem of this.trust.pems()) {
        const c = new X509Certificate(pem);
        byPrint.set(c.fingerprint256, c);
      }
      this.roots = { index: this.trust.index, byPrint };
    }
    return this.roots;
  }

  /** What the leaf's issuer is an authority for, checked once per issuer certificate (and trust bundle). */
  private issuer(issuer: DetailedPeerCertificate): IssuerVerdict {
    const roots = this.currentRoots();
    const have = this.issuers.get(issuer.fingerprint256);
    if (have && have.trustIndex === roots.index) return have.verdict;
    let verdict: IssuerVerdict;
    try {
      verdict = this.resolveIssuer(issuer, roots.byPrint);
    } catch (e) {
      verdict = { kind: 'refused', code: 'ISSUER_UNTRUSTED', reason: `issuer certificate unreadable: ${(e as Error).message}` };
    }
    setBounded(this.issuers, issuer.fingerprint256, { trustIndex: roots.index, verdict }, MAX_ISSUERS);
    return verdict;
  }

  private resolveIssuer(issuer: DetailedPeerCertificate, roots: Map<string, X509Certificate>): IssuerVerdict {
    const root = roots.get(issuer.fingerprint256);
    if (root) return { kind: 'root', key: root.publicKey };
    const x = new X509Certificate(issuer.raw);
    if (x.checkIssued(x) && x.verify(x.publicKey)) return { kind: 'refused', code: 'ISSUER_UNTRUSTED', reason: 'issuer is a root this agent does not trust' };
    if (!x.ca) return { kind: 'refused', code: 'ISSUER_UNTRUSTED', reason: 'issuer is not a CA certificate' };
    // Not taken from the handshake on faith: the issuer must chain, signature by signature, to a trusted root.
    let child = x;
    let up: DetailedPeerCertificate | undefined = issuer.issuerCertificate;
    for (let depth = 0; ; depth++) {
      if (depth >= MAX_DEPTH || !up || !up.raw || up.fingerprint256 === issuer.fingerprint256) {
        return { kind: 'refused', code: 'ISSUER_UNTRUSTED', reason: 'issuer does not chain to a trusted root' };
      }
      const anchor = roots.get(up.fingerprint256);
      const parent = anchor ?? new X509Certificate(up.raw);
      if (!parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey)) {
        return { kind: 'refused', code: 'ISSUER_UNTRUSTED', reason: 'issuer chain has a broken link' };
      }
      if (anchor) break;
      child = parent;
      up = up.issuerCertificate === up ? undefined : up.issuerCertificate;
    }
    const uris = uriSans(x.subjectAltName);
    const authority = uris.length === 1 ? parseAuthorityUri(uris[0]) : undefined;
    if (!authority || authority.kind !== 'node') return { kind: 'refused', code: 'ISSUER_NAMES_NO_NODE', reason: NAMES_NO_NODE };
    return { kind: 'node', key: x.publicKey, node: authority.node, trustDomain: authority.trustDomain };
  }

  // ---- the catalog's view ----

  /** Brings `hosted` in line with the catalog; notes when a service left a node. Cheap when nothing moved. */
  private sync(): void {
    const stamp = this.catalog.tableIdx('nodes', 'services');
    if (stamp === this.stamp) return;
    const first = this.stamp === -1;
    this.stamp = stamp;
    const dirty = new Set<string>();
    const seen = new Set<string>();
    for (const entry of this.catalog.allNodes()) {
      const name = entry.info.Node;
      seen.add(name);
      const have = this.perNode.get(name);
      if (have && have.entry === entry && have.version === entry.version) continue;
      this.perNode.set(name, { entry, version: entry.version, hosts: hostedOn(entry) });
      const lower = foldName(name);
      let names = this.spellings.get(lower);
      if (!names) this.spellings.set(lower, names = new Set());
      names.add(name);
      dirty.add(lower);
    }
    for (const name of [...this.perNode.keys()]) {
      if (seen.has(name)) continue;
      this.perNode.delete(name);
      const lower = foldName(name);
      const names = this.spellings.get(lower);
      names?.delete(name);
      if (names?.size === 0) this.spellings.delete(lower);
      dirty.add(lower);
    }
    const now = this.now();
    for (const lower of dirty) {
      const next = new Set<string>();
      for (const name of this.spellings.get(lower) ?? []) for (const s of this.perNode.get(name)!.hosts) next.add(s);
      const prev = this.hosted.get(lower);
      for (const s of prev ?? []) if (!next.has(s) && !first) this.goneAt.set(pairKey(lower, s), now);
      for (const s of next) this.goneAt.delete(pairKey(lower, s));
      if (next.size > 0) this.hosted.set(lower, next);
      else this.hosted.delete(lower);
    }
    this.scheduleExpiry();
  }

  /** One timer, for the earliest grace to run out. */
  private scheduleExpiry(): void {
    let earliest = Infinity;
    for (const t of this.goneAt.values()) earliest = Math.min(earliest, t + this.graceMs);
    if (earliest === this.expiryAt || this.closed) return;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.expiryAt = earliest;
    if (earliest === Infinity) return;
    this.expiryTimer = setTimeout(() => this.expire(), Math.max(0, earliest - this.now()) + 1);
    this.expiryTimer.unref();
  }

  private expire(): void {
    this.expiryTimer = undefined;
    this.expiryAt = Infinity;
    if (this.catalog.feed.isClosed) this.close();
    if (this.closed) return;
    this.sync();
    const now = this.now();
    let lapsed = 0;
    for (const [k, t] of this.goneAt) {
      if (now - t >= this.graceMs) {
        this.goneAt.delete(k);
        lapsed++;
      }
    }
    this.scheduleExpiry();
    if (lapsed === 0) return;
    for (const fn of [...this.revokeListeners]) {
      try {
        fn();
      } catch (e) {
        this.opts.log?.error({ err: (e as Error).message }, 'identity binding: a revocation listener failed');
      }
    }
  }
}

// Checks seals on replicated state: learns signer chains up to the pool's roots and says what each signer is an authority for.

import { verify, X509Certificate, type KeyObject } from 'node:crypto';
import { parseAuthorityUri, type Authority } from '../authority-ids.js';
import type { TrustSource } from '../trust-sources.js';
import { uriSans } from '../spiffe/spiffe-id.js';
import { fingerprintOf, type Seal } from './record-signer.js';

interface Known { chain: string[]; authority: Authority; key: KeyObject; notAfter: number; trustIndex: number }

/** At most this many signers are remembered (a pool has one per node, plus a few policy writers). */
const MAX_SIGNERS = 16_384;
const MAX_CHAIN = 4;

const selfSigned = (c: X509Certificate) => c.checkIssued(c) && c.verify(c.publicKey);

export class AuthorityVerifier {
  private readonly known = new Map<string, Known>();
  /** Signers whose chain was refused (by fingerprint, under the trust bundle it was checked against), and why. */
  private readonly rejected = new Map<string, { reason: string; trustIndex: number }>();
  private roots: { index: number; certs: X509Certificate[]; byPrint: Map<string, X509Certificate> } = { index: -1, certs: [], byPrint: new Map() };

  constructor(private readonly trust: TrustSource) {}

  private currentRoots() {
    if (this.roots.index !== this.trust.index) {
      const certs = this.trust.pems().map((p) => new X509Certificate(p));
      this.roots = { index: this.trust.index, certs, byPrint: new Map(certs.map((c) => [fingerprintOf(c.raw), c])) };
    }
    return this.roots;
  }

  /**
   * Verifies a signer's chain (base64 DER, signer first, without the root unless the root signs) up to one of the
   * pool's roots, and remembers it. Returns the signer's fingerprint, or why the chain is refused.
   */
  learn(chain: unknown): { by: string } | { error: string } {
    if (!Array.isArray(chain) || chain.length === 0 || chain.length > MAX_CHAIN || !chain.every((c) => typeof c === 'string' && c.length < 8192)) return { error: 'malformed chain' };
    // Known, still valid under the same trust bundle: no parsing (every push/pull carries every signer's chain).
    const first = fingerprintOf(Buffer.from(chain[0] as string, 'base64'));
    const cached = this.known.get(first);
    if (cached && cached.trustIndex === this.currentRoots().index && cached.notAfter > Date.now()) return { by: first };
    const refused = this.rejected.get(first);
    if (refused && refused.trustIndex === this.currentRoots().index) return { error: refused.reason };
    let certs: X509Certificate[];
    try {
      certs = (chain as string[]).map((c) => new X509Certificate(Buffer.from(c, 'base64')));
    } catch {
      return { error: 'unparsable certificate' };
    }
    const roots = this.currentRoots();
    // A chain as TLS hands it ends in the root: the root itself is known here, not learned.
    while (certs.length > 1 && roots.byPrint.has(fingerprintOf(certs[certs.length - 1].raw))) {
      certs = certs.slice(0, -1);
      chain = (chain as string[]).slice(0, -1);
    }
    const by = fingerprintOf(certs[0].raw);
    const have = this.known.get(by);
    if (have && have.trustIndex === roots.index && have.notAfter > Date.now()) return { by };
    const verdict = this.verifyChain(certs, roots);
    if (typeof verdict === 'string') {
      this.known.delete(by);
      if (this.rejected.size >= MAX_SIGNERS) this.rejected.clear();
      this.rejected.set(by, { reason: verdict, trustIndex: roots.index });
      return { error: verdict };
    }
    this.rejected.delete(by);
    if (this.known.size >= MAX_SIGNERS && !have) this.known.delete(this.known.keys().next().value!);
    this.known.set(by, { chain: chain as string[], authority: verdict, key: certs[0].publicKey, notAfter: Date.parse(certs[0].validTo), trustIndex: roots.index });
    return { by };
  }

  private verifyChain(certs: X509Certificate[], roots: AuthorityVerifier['roots']): Authority | string {
    const now = Date.now();
    for (const c of certs) {
      if (Date.parse(c.validFrom) > now + 60_000 || Date.parse(c.validTo) < now) return 'certificate outside its validity period';
    }
    const signer = certs[0];
    const rootOfSigner = roots.byPrint.get(fingerprintOf(signer.raw));
    if (rootOfSigner) {
      if (certs.length !== 1) return 'a root signs alone';
      return { kind: 'root', trustDomain: this.trust.trustDomain };
    }
    for (let i = 0; i + 1 < certs.length; i++) {
      if (!certs[i + 1].ca || !certs[i].checkIssued(certs[i + 1]) || !certs[i].verify(certs[i + 1].publicKey)) return 'broken chain';
    }
    const last = certs[certs.length - 1];
    const anchor = roots.certs.find((r) => last.checkIssued(r) && last.verify(r.publicKey));
    if (!anchor || selfSigned(last)) return 'chain does not end at a root of this pool';
    const uris = uriSans(signer.subjectAltName);
    if (uris.length !== 1) return 'a signer names exactly one authority URI';
    const authority = parseAuthorityUri(uris[0]);
    if (!authority) return `signer URI ${uris[0]} is no node or policy authority`;
    if (authority.trustDomain !== this.trust.trustDomain) return `signer is in trust domain ${authority.trustDomain}, not ours`;
    if (authority.kind === 'node' && !signer.ca) return 'a node authority is its intermediate CA';
    return authority;
  }

  /**
   * What the seal's signer is an authority for, if the signature over `body` holds; `unknown` when the signer's chain
   * has not been learned yet (it travels in push/pull), else why it is refused.
   */
  check(seal: Partial<Seal> | undefined, body: string): Authority | 'unknown' | { error: string } {
    if (!seal || typeof seal.by !== 'string' || typeof seal.sig !== 'string' || seal.sig.length > 200) return { error: 'unsigned' };
    const k = this.known.get(seal.by);
    if (!k) {
      const no = this.rejected.get(seal.by);
      return no && no.trustIndex === this.currentRoots().index ? { error: `signer not trusted: ${no.reason}` } : 'unknown';
    }
    const roots = this.currentRoots();
    if (k.trustIndex !== roots.index || k.notAfter < Date.now()) {
      const again = this.learn(k.chain);
      if ('error' in again) return { error: `signer no longer trusted: ${again.error}` };
    }
    let ok = false;
    try {
      ok = verify('sha256', Buffer.from(body), { key: k.key, dsaEncoding: 'ieee-p1363' }, Buffer.from(seal.sig, 'base64'));
    } catch {
      ok = false;
    }
    return ok ? k.authority : { error: 'bad signature' };
  }

  /** Every chain learned, for a push/pull (so peers can check what we relay). */
  chains(): string[][] {
    return [...this.known.values()].map((k) => k.chain);
  }

  /** The chain of one signer, if known. */
  chainOf(by: string): string[] | undefined {
    return this.known.get(by)?.chain;
  }
}

/** Whether `a` may sign pool-wide policy (intentions, config entries). */
export const isPolicyAuthority = (a: Authority) => a.kind === 'root' || a.kind === 'policy';

/** Whether `a` may sign the catalog entry of `node`. */
export const isNodeAuthority = (a: Authority, node: string) => a.kind === 'root' || (a.kind === 'node' && a.node.toLowerCase() === node.toLowerCase());

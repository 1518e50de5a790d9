// TLS for the data plane: per-service secure contexts from the current leaf, and the checks on the peer's identity.

import { X509Certificate } from 'node:crypto';
import { createSecureContext, type DetailedPeerCertificate, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { Leaf } from './ca/leaf-holder.js';
import type { LeafSource, TrustSource } from './trust-sources.js';
import { foldName } from '../model/service-names.js';
import { parseServiceId, uriSans, type ServiceIdentity } from './spiffe/spiffe-id.js';
import { IdentityRefusal, type BoundIdentity, type IdentityBinding } from './identity-binding.js';

/** TLS 1.2 minimum (1.3 preferred by negotiation), ECDHE with AES-GCM or ChaCha20 only, as Consul's proxy. */
export const TLS_SETTINGS = {
  minVersion: 'TLSv1.2' as const,
  ciphers: [
    'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  ecdhCurve: 'X25519:P-256:P-384',
};

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** What clientIdentity says of a handshake without a client certificate (counted as `no_client_cert`). */
export const NO_CLIENT_CERT = 'no client certificate';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/** Secure contexts per local service, rebuilt whenever that service's leaf changes. */
export class ServiceTls {
  private readonly contexts = new Map<string, { key: string; ctx: SecureContext }>();
  /** Roots, and each root's trust domain by certificate fingerprint. */
  private trust: { index: number; roots: string[]; domainOfRoot: Map<string, string> } = { index: -1, roots: [], domainOfRoot: new Map() };

  constructor(
    private readonly bundle: TrustSource,
    private readonly leaves: LeafSource,
    /** With it, a leaf signed by a node's intermediate is accepted only for a service the catalog lists on that node. */
    readonly binding?: IdentityBinding,
  ) {}

  /** The trust bundle's roots and domains, recomputed only when the bundle changes. */
  private current() {
    if (this.trust.index !== this.bundle.index) {
      const roots = this.bundle.pems();
      const domainOfRoot = new Map<string, string>();
      for (const pem of roots) {
        const c = new X509Certificate(pem);
        const uri = (c.subjectAltName ?? '').split(', ').find((x) => x.startsWith('URI:spiffe://'));
        if (uri) domainOfRoot.set(c.fingerprint256, new URL(uri.slice(4)).host.toLowerCase());
      }
      this.trust = { index: this.bundle.index, roots, domainOfRoot };
    }
    return this.trust;
  }

  options(leaf: Leaf) {
    return { ...TLS_SETTINGS, key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, ca: this.current().roots };
  }

  /** TLS options with the leaf the service has right now, without waiting; undefined before its first leaf. */
  currentOptions(service: string) {
    const leaf = this.leaves.current(service);
    return leaf ? this.options(leaf) : undefined;
  }

  /** TLS options with the service's current leaf (signed on first use). */
  async leafOptions(service: string) {
    return this.options(await this.leaves.get(service));
  }

  /** The context new connections of `service` use; open connections keep the one they started with. */
  async context(service: string): Promise<SecureContext> {
    const leaf = await this.leaves.get(service);
    const key = `${leaf.ModifyIndex}/${this.bundle.index}`;
    const have = this.contexts.get(service);
    if (have && have.key === key) return have.ctx;
    const ctx = createSecureContext(this.options(leaf));
    this.contexts.set(service, { key, ctx });
    return ctx;
  }

  /**
   * The verified client's service identity (with the node it is bound to, see identity-binding.ts), or why it is
   * refused: a string for a bad certificate, an IdentityRefusal for one the catalog does not back. The chain itself
   * was verified by the handshake.
   */
  clientIdentity(socket: TLSSocket): BoundIdentity | IdentityRefusal | string {
    const cert = socket.getPeerCertificate(true);
    if (!cert || !cert.raw) return NO_CLIENT_CERT;
    const id: BoundIdentity | string = this.identityOf(cert, CLIENT_AUTH, 'client');
    if (typeof id === 'string' || !this.binding) return id;
    const bound = this.binding.check(cert, id);
    if (bound instanceof IdentityRefusal) return bound;
    if (bound) id.boundTo = bound;
    return id;
  }

  /**
   * For tls.connect: accept the server only if its URI names `service` in a trusted domain (and, for a leaf of a
   * node's intermediate, the catalog lists `service` on that node). `source` names the caller in a refusal's log.
   */
  serverCheck(service: string, source?: string): (host: string, cert: PeerCertificate) => Error | undefined {
    return (_host, cert) => {
      const id = this.identityOf(cert, SERVER_AUTH, 'server');
      if (typeof id === 'string') return new Error(id);
      if (foldName(id.service) !== foldName(service)) {
        return new Error(`peer certificate mismatch got ${id.uri}, want service ${service}`);
      }
      const bound = this.binding?.check(cert, id);
      if (bound instanceof IdentityRefusal) {
        this.binding!.report({ direction: 'outbound', source: source ?? 'unknown', destination: service, refusal: bound });
        return Object.assign(new Error(`${bound.code}: ${bound.message}`), { code: bound.code });
      }
      return undefined;
    };
  }

  private identityOf(cert: PeerCertificate, eku: string, role: string): ServiceIdentity | string {
    const usages = (cert as PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage;
    if (!usages || !usages.includes(eku)) return `${role} certificate lacks the ${role === 'client' ? 'clientAuth' : 'serverAuth'} extended key usage`;
    // A CA certificate is no workload: it may sign, and what it signs must not pass as a peer's own identity.
    if (isCa(cert)) return `invalid leaf certificate: it is a CA (basic constraints CA:TRUE)`;
    const uris = uriSans(cert.subjectaltname);
    if (uris.length === 0) return `invalid leaf certificate: no URI SAN`;
    // Exactly one identity per leaf, as Consul issues them: with two, which one decides would be a guess.
    if (uris.length > 1) return `invalid leaf certificate: ${uris.length} URI SANs (one service identity per leaf)`;
    const id = parseServiceId(uris[0]);
    if (!id) return `invalid leaf certificate URI ${uris[0]}: not a canonical spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>`;
    // The URI's trust domain must be the one of the root this chain ends in: a second trusted root may
    // not mint identities in another root's domain.
    const anchor = this.current().domainOfRoot.get(anchorOf(cert as DetailedPeerCertificate).fingerprint256);
    if (anchor !== id.trustDomain) return `certificate URI ${id.uri} is not in the trust domain of the root that signed it (${anchor ?? 'unknown root'})`;
    return id;
  }
}

/** The peer certificate's CA:TRUE basic constraint (Node reports it as `ca`; parsed from the DER where it does not). */
function isCa(cert: PeerCertificate): boolean {
  const ca = (cert as PeerCertificate & { ca?: unknown }).ca;
  if (typeof ca === 'boolean') return ca;
  return cert.raw ? new X509Certificate(cert.raw).ca : true;
}

/** The last certificate of a verified peer chain (the trust anchor). */
function anchorOf(cert: DetailedPeerCertificate): DetailedPeerCertificate {
  let c = cert;
  for (let i = 0; i < 8 && c.issuerCertificate && c.issuerCertificate !== c && c.issuerCertificate.fingerprint256 !== c.fingerprint256; i++) c = c.issuerCertificate;
  return c;
}

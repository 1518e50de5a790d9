// The agent's CA: its root (made on first start, or loaded from ca_file/ca_key_file), trust domain and trust bundle.

import { createPublicKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NodemeshError } from '../../lib/errors.js';
import { writePrivate } from '../../lib/private-file.js';
import { agentIdentityUri, isSpiffeSafe } from '../spiffe/spiffe-id.js';
import { certInfo, createRoot, importPrivateKey, signLeaf, splitPem, type CertInfo, type SignedLeaf } from './x509-certs.js';

export interface CaRoot {
  ID: string;
  Name: string;
  SerialNumber: number;
  SigningKeyID: string;
  ExternalTrustDomain: string;
  NotBefore: string;
  NotAfter: string;
  RootCert: string;
  IntermediateCerts: string[] | null;
  Active: boolean;
  PrivateKeyType: 'ec';
  PrivateKeyBits: 256;
  CreateIndex: number;
  ModifyIndex: number;
}

const caError = (msg: string) => new NodemeshError('CA_INVALID', msg, 2);

function trustDomainOf(info: CertInfo, where: string): string {
  const uri = info.uris.find((u) => u.startsWith('spiffe://'));
  if (!uri) throw caError(`${where}: the root certificate has no spiffe:// URI SAN naming the trust domain (make one with 'nodemesh ca init')`);
  return new URL(uri).host;
}

export class CertificateAuthority {
  private constructor(
    readonly trustDomain: string,
    /** PEMs of every trusted root. */
    readonly rootPems: string[],
    /** The certificate that signs leaves (a root or an intermediate) followed by intermediates up to a root. */
    private readonly signingChain: string[],
    private readonly signingKey: CryptoKey,
    /** The same key for node:crypto, which signs replicated records (agent/authority). */
    readonly signingKeyObject: KeyObject,
  ) {}

  /** Creates a new CA for a cluster: a root and its trust domain. */
  static async createRoot(): Promise<{ certPem: string; keyPem: string; trustDomain: string }> {
    const clusterId = randomUUID();
    const trustDomain = `${clusterId}.consul`;
    const { certPem, keyPem } = await createRoot({ trustDomain, clusterId, years: 10 });
    return { certPem, keyPem, trustDomain };
  }

  /**
   * The agent's CA: from `caFile`/`caKeyFile` when given (a cluster's shared root, or a per-node
   * intermediate followed by its chain), else the one kept in the data dir, made on first start.
   */
  static async open(opts: { dataDir: string; caFile?: string; caKeyFile?: string }): Promise<CertificateAuthority> {
    let certBundle: string;
    let keyPem: string;
    let where: string;
    if (opts.caFile || opts.caKeyFile) {
      if (!opts.caFile || !opts.caKeyFile) throw caError('ca_file and ca_key_file must be given together');
      where = opts.caFile;
      try {
        certBundle = readFileSync(opts.caFile, 'utf8');
        keyPem = readFileSync(opts.caKeyFile, 'utf8');
      } catch (e) {
        throw caError(`cannot read CA files: ${(e as Error).message}`);
      }
    } else {
      const dir = join(opts.dataDir, 'ca');
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      const certPath = join(dir, 'root-cert.pem');
      const keyPath = join(dir, 'root-key.pem');
      where = certPath;
      if (!existsSync(certPath) || !existsSync(keyPath)) {
        const made = await CertificateAuthority.createRoot();
        writePrivate(keyPath, made.keyPem);
        writeFileSync(certPath, made.certPem, { mode: 0o644 });
      }
      certBundle = readFileSync(certPath, 'utf8');
      keyPem = readFileSync(keyPath, 'utf8');
    }
    return CertificateAuthority.fromPem(certBundle, keyPem, where);
  }

  /**
   * A CA from its PEM text (`where` names the source in errors): the signing certificate first (a CA), then its chain
   * up to a root, and the signing key, which must belong to the first certificate.
   */
  static async fromPem(certBundle: string, keyPem: string, where: string): Promise<CertificateAuthority> {
    const chain = splitPem(certBundle);
    if (chain.length === 0) throw caError(`${where}: no PEM certificate found`);
    let infos: CertInfo[];
    try {
      infos = chain.map(certInfo);
    } catch (e) {
      throw caError(`${where}: not a valid certificate: ${(e as Error).message}`);
    }
    if (!infos[0].isCa) throw caError(`${where}: the first certificate is not a CA certificate (CA:TRUE)`);
    const roots = chain.filter((_, i) => infos[i].selfSigned);
    if (roots.length === 0) throw caError(`${where}: holds an intermediate but not its root: append the root certificate after the intermediate`);
    // One chain, ending in its one root: a second self-signed certificate would be trusted as a root of its own.
    if (roots.length > 1 || !infos[chain.length - 1].selfSigned) throw caError(`${where}: holds more than the signing certificate's chain: give the signing certificate, its intermediates, then one root, last (extra roots go in ca_trusted_roots_file)`);
    const certs = chain.map((p) => new X509Certificate(p));
    for (let i = 0; i + 1 < certs.length; i++) {
      if (!certs[i].checkIssued(certs[i + 1]) || !certs[i].verify(certs[i + 1].publicKey)) {
        throw caError(`${where}: certificate ${i + 1} is not signed by the one after it: give the signing certificate first, then its issuers up to the root`);
      }
    }
    const trustDomain = trustDomainOf(certInfo(roots[0]), where);
    let key: CryptoKey;
    let keyObject: KeyObject;
    try {
      const imported = await importPrivateKey(keyPem);
      key = imported.key;
      keyObject = imported.object;
      const signer = new X509Certificate(chain[0]);
      if (!signer.publicKey.equals(createPublicKey(imported.object))) throw caError('the key does not belong to the first certificate');
    } catch (e) {
      throw caError(`CA key for ${where}: ${(e as Error).message}`);
    }
    return new CertificateAuthority(trustDomain, roots, chain, key, keyObject);
  }

  /** The signing certificate, then its chain up to a root (the root alone when a root signs). */
  get signingPems(): string[] {
    return this.signingChain;
  }

  /** Whether this agent holds a root key (every identity and all policy are its to sign), not a node's intermediate. */
  get holdsRootKey(): boolean {
    return this.rootPems.includes(this.signingChain[0]);
  }

  /** Intermediates that must travel with each leaf (empty when a root signs directly). */
  get intermediates(): string[] {
    return this.signingChain.filter((p) => !this.rootPems.includes(p));
  }

  spiffeId(datacenter: string, service: string): string {
    return `spiffe://${this.trustDomain}/ns/default/dc/${datacenter}/svc/${service}`;
  }

  async signService(datacenter: string, service: string, ttlMs: number): Promise<SignedLeaf> {
    assertLeafName(service);
    assertLeafName(datacenter);
    const cn = `${service.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 33)}.svc.default.${this.trustDomain.slice(0, 8)}.consul`;
    return signLeaf({ issuerCertPem: this.signingChain[0], issuerKey: this.signingKey, spiffeId: this.spiffeId(datacenter, service), commonName: cn, ttlMs });
  }

  /** This agent's own certificate (client and server), naming its node: what it shows its peers on the peer endpoint. */
  async signAgent(datacenter: string, node: string, ttlMs: number): Promise<SignedLeaf> {
    assertLeafName(node);
    assertLeafName(datacenter);
    const cn = `${node.toLowerCase().replace(/[^a-z0-9-]/g, '').slice(0, 40)}.agent.${this.trustDomain.slice(0, 8)}.consul`;
    return signLeaf({ issuerCertPem: this.signingChain[0], issuerKey: this.signingKey, spiffeId: agentIdentityUri(this.trustDomain, datacenter, node), commonName: cn, ttlMs });
  }

  /** The roots in Consul's /v1/agent/connect/ca/roots shape. */
  rootsView(index: number): { ActiveRootID: string; TrustDomain: string; Roots: CaRoot[] } {
    const roots = this.rootPems.map((pem, i) => {
      const info = certInfo(pem);
      return {
        ID: info.sha1, Name: 'Consul CA Root Cert', SerialNumber: Number.parseInt(info.serial.slice(-12), 16),
        SigningKeyID: info.ski, ExternalTrustDomain: this.trustDomain,
        NotBefore: info.notBefore.toISOString(), NotAfter: info.notAfter.toISOString(),
        RootCert: pem, IntermediateCerts: i === 0 && this.intermediates.length ? this.intermediates : null,
        Active: i === 0, PrivateKeyType: 'ec' as const, PrivateKeyBits: 256 as const, CreateIndex: index, ModifyIndex: index,
      };
    });
    return { ActiveRootID: roots[0].ID, TrustDomain: this.trustDomain, Roots: roots };
  }
}

/** A name that goes into a SPIFFE ID as is (no escaping, so no two spellings of one identity). */
export function assertLeafName(name: string): void {
  if (!isSpiffeSafe(name)) {
    throw new NodemeshError('LEAF_BAD_NAME', `cannot issue a leaf for ${JSON.stringify(name)}: service names in the mesh use letters, digits, '.', '_' and '-' only`, 400);
  }
}

// This agent's authority in the pool: the key that signs its own catalog entry, the policy key if it is a policy writer,
// and the verifier for everything peers relay.

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { NodemeshError } from '../../lib/errors.js';
import type { CatalogAuthority, Seal } from '../../catalog/replication.js';
import { parseAuthorityUri } from '../authority-ids.js';
import type { CertificateAuthority } from '../ca/certificate-authority.js';
import { splitPem } from '../ca/x509-certs.js';
import type { TrustSource } from '../trust-sources.js';
import { uriSans } from '../spiffe/spiffe-id.js';
import { AuthorityVerifier, isNodeAuthority } from './authority-verifier.js';
import { RecordSigner } from './record-signer.js';

const credError = (msg: string) => new NodemeshError('AUTHORITY_CREDENTIAL_INVALID', msg, 2);

/** A policy writer's credential from files: its signer, and its certificate chain and key for the forwarded-writes listener. */
export interface PolicyCredential { signer: RecordSigner; certChainPem: string; keyPem: string; name: string }

export function loadPolicyCredential(certFile: string, keyFile: string, trustDomain: string): PolicyCredential {
  let certText: string;
  let keyPem: string;
  try {
    certText = readFileSync(certFile, 'utf8');
    keyPem = readFileSync(keyFile, 'utf8');
  } catch (e) {
    throw credError(`cannot read the policy credential: ${(e as Error).message}`);
  }
  const pems = splitPem(certText);
  if (pems.length === 0) throw credError(`${certFile}: no PEM certificate found (make one with \`nodemesh ca issue-policy\`)`);
  const cert = new X509Certificate(pems[0]);
  const uris = uriSans(cert.subjectAltName);
  const authority = uris.length === 1 ? parseAuthorityUri(uris[0]) : undefined;
  if (authority?.kind !== 'policy') throw credError(`${certFile}: not a policy credential (its URI must be spiffe://<trust-domain>/agent/policy/<name>; make one with \`nodemesh ca issue-policy\`)`);
  if (authority.trustDomain !== trustDomain) throw credError(`${certFile}: a policy credential of trust domain ${authority.trustDomain}, but this agent's CA is ${trustDomain}`);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw credError(`${keyFile}: not a private key (${(e as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) throw credError(`${keyFile}: the key does not belong to ${certFile}`);
  return { signer: new RecordSigner(key, pems), certChainPem: pems.join(''), keyPem, name: authority.name };
}

export class PoolAuthority implements CatalogAuthority {
  readonly verifier: AuthorityVerifier;
  private nodeSigner: RecordSigner;

  constructor(
    trust: TrustSource,
    ca: CertificateAuthority,
    private readonly node: string,
    /** The policy writer's credential, when this agent has one. */
    readonly policy: PolicyCredential | undefined,
    private readonly log: Logger,
  ) {
    this.verifier = new AuthorityVerifier(trust);
    this.nodeSigner = this.signerFor(ca);
    if (policy) this.learnOwn(policy.signer);
  }

  /** Signs intentions and config entries written here: the policy credential, or the root key an agent holds (as before per-node credentials). */
  policySigner(ca: CertificateAuthority): RecordSigner | undefined {
    return this.policy?.signer ?? (ca.holdsRootKey ? this.nodeSigner : undefined);
  }

  /** A new CA (SIGHUP rotation): our own entry is signed with its key from now on. */
  rotate(ca: CertificateAuthority): void {
    this.nodeSigner = this.signerFor(ca);
  }

  private signerFor(ca: CertificateAuthority): RecordSigner {
    if (!ca.holdsRootKey) {
      const uris = uriSans(new X509Certificate(ca.signingPems[0]).subjectAltName);
      const authority = uris.map(parseAuthorityUri).find((a) => a !== undefined);
      if (authority?.kind === 'node' && authority.node.toLowerCase() !== this.node.toLowerCase()) {
        throw credError(`the CA in ca_file is node ${authority.node}'s intermediate, but this agent is node ${this.node}: give each node its own (\`nodemesh ca issue-intermediate --node ${this.node}\`)`);
      }
      if (authority?.kind !== 'node') {
        this.log.warn({ code: 'AUTHORITY_NODE_UNNAMED' }, 'the intermediate CA in ca_file names no node: other agents will refuse this node\'s catalog entry and leaves; re-issue it with `nodemesh ca issue-intermediate --node NAME`');
      }
    }
    const signer = new RecordSigner(ca.signingKeyObject, ca.signingPems);
    this.learnOwn(signer);
    return signer;
  }

  private learnOwn(signer: RecordSigner): void {
    const r = this.verifier.learn(signer.chain);
    if ('error' in r) this.log.warn({ code: 'AUTHORITY_OWN_CHAIN', reason: r.error }, 'this agent\'s own signing chain does not verify against its trust bundle: peers will refuse what it signs');
  }

  seal(body: string): Seal {
    return this.nodeSigner.seal(body);
  }

  checkNode(node: string, body: string, seal: Partial<Seal> | undefined): 'ok' | 'unknown' | string {
    const verdict = this.verifier.check(seal, body);
    if (verdict === 'unknown') return 'unknown';
    if ('error' in verdict) return verdict.error;
    if (!isNodeAuthority(verdict, node)) return `signed by ${verdict.kind === 'node' ? `node ${verdict.node}` : `policy writer ${(verdict as { name: string }).name}`}, not by node ${node}`;
    return 'ok';
  }

  chains(): unknown[] {
    return this.verifier.chains();
  }

  learn(chains: unknown): void {
    if (!Array.isArray(chains)) return;
    for (const c of chains.slice(0, 16_384)) this.verifier.learn(c);
  }
}

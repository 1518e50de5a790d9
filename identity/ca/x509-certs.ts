// X.509 building blocks for the CA: P-256 keys, the root and leaf certificates Consul's CA makes, and their identifiers.

import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { NodemeshError } from '../../lib/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const subtle = webcrypto.subtle as unknown as SubtleCrypto;

export interface KeyPair { privateKey: CryptoKey; publicKey: CryptoKey }

export async function generateKeyPair(): Promise<KeyPair> {
  return await subtle.generateKey(EC, true, ['sign', 'verify']) as KeyPair;
}

/** SEC1 "EC PRIVATE KEY" PEM, the form Consul hands out. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'sec1', format: 'pem' }).toString();
}

/** Loads an EC P-256 private key PEM (SEC1 or PKCS#8) as a signing key. */
export async function importPrivateKey(pem: string): Promise<{ key: CryptoKey; object: KeyObject }> {
  const object = createPrivateKey(pem);
  if (object.asymmetricKeyType !== 'ec' || object.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new NodemeshError('CA_INVALID', 'the CA key must be an EC P-256 private key', 2);
  }
  const der = object.export({ type: 'pkcs8', format: 'der' });
  const key = await subtle.importKey('pkcs8', der, EC, true, ['sign']) as CryptoKey;
  return { key, object };
}

/** PEM text that ends in a newline, so certificates can be concatenated into a chain. */
const pemOf = (c: { toString(f: 'pem'): string }) => `${c.toString('pem').trimEnd()}\n`;

const serial = () => {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
};

/** Colon-separated lowercase hex, Consul's format for IDs and serials. */
export const colonHex = (buf: Buffer | string) => (typeof buf === 'string' ? buf : buf.toString('hex')).match(/../g)!.join(':');

export async function createRoot(opts: { trustDomain: string; clusterId: string; years: number }): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=pri-${randomBytes(4).toString('hex')}.consul.ca.${opts.clusterId.slice(0, 8)}.consul`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + opts.years * 365 * 86_400_000),
    keys,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${opts.trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pemOf(cert), keyPem: await privateKeyPem(keys.privateKey) };
}

/** A certificate for a new key, signed by a root for `years`: an intermediate or a policy credential (by `extensions`). */
async function issueByRoot(opts: { issuerCertPem: string; issuerKey: CryptoKey; trustDomain: string; years?: number }, cnPrefix: string,
  extensions: (keys: KeyPair) => x509.Extension[]): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const issuer = new x509.X509Certificate(opts.issuerCertPem);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${cnPrefix}-${randomBytes(4).toString('hex')}.consul.ca.${opts.trustDomain.slice(0, 8)}.consul`,
    issuer: issuer.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.years ?? 1) * 365 * 86_400_000),
    signingKey: opts.issuerKey,
    publicKey: keys.publicKey,
    signingAlgorithm: EC,
    extensions: [
      ...extensions(keys),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export()),
    ],
  });
  return { certPem: pemOf(cert), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * An intermediate CA, signed by a root; it signs leaves, not other CAs. `uri` names what it is an authority for
 * (a node's: `spiffe://<td>/agent/node/<node>`, see authority-ids.ts); without it, the trust domain alone.
 */
export function createIntermediate(opts: { issuerCertPem: string; issuerKey: CryptoKey; trustDomain: string; years?: number; uri?: string }): Promise<{ certPem: string; keyPem: string }> {
  return issueByRoot(opts, 'int', () => [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.uri ?? `spiffe://${opts.trustDomain}` }]),
  ]);
}

/**
 * A policy writer's credential, signed by a root: not a CA (it cannot sign leaves), it signs intentions and config
 * entries, and serves forwarded policy writes over TLS. `uri` is `spiffe://<td>/agent/policy/<name>`.
 */
export function createPolicyCert(opts: { issuerCertPem: string; issuerKey: CryptoKey; trustDomain: string; uri: string; years?: number }): Promise<{ certPem: string; keyPem: string }> {
  return issueByRoot(opts, 'policy', () => [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.uri }]),
  ]);
}

export interface SignedLeaf { certPem: string; keyPem: string; serial: string; notBefore: Date; notAfter: Date }

/** A service leaf like Consul's: P-256, backdated a minute, URI SAN only, client+server auth. */
export async function signLeaf(opts: {
  /** Empty only to make a deliberately unusable certificate (tests of refusal). */
  issuerCertPem: string; issuerKey: CryptoKey; spiffeId: string; commonName: string; ttlMs: number; dnsNames?: string[];
  notBefore?: Date;
}): Promise<SignedLeaf> {
  const keys = await generateKeyPair();
  const issuer = new x509.X509Certificate(opts.issuerCertPem);
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + opts.ttlMs);
  const serialNumber = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${opts.commonName}`,
    issuer: issuer.subject,
    notBefore,
    notAfter,
    signingKey: opts.issuerKey,
    publicKey: keys.publicKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...(opts.spiffeId ? [{ type: 'url' as const, value: opts.spiffeId }] : []),
        ...(opts.dnsNames ?? []).map((d) => ({ type: 'dns' as const, value: d })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await issuer.publicKey.export()),
    ],
  });
  return { certPem: pemOf(cert), keyPem: await privateKeyPem(keys.privateKey), serial: serialNumber, notBefore, notAfter };
}

/** Splits a PEM bundle into its certificates. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? [];
}

export interface CertInfo { sha1: string; ski: string; notBefore: Date; notAfter: Date; serial: string; uris: string[]; selfSigned: boolean; isCa: boolean }

export function certInfo(pem: string): CertInfo {
  const c = new X509Certificate(pem);
  const uris = (c.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
  const spki = c.publicKey.export({ type: 'spki', format: 'der' });
  return {
    sha1: colonHex(createHash('sha1').update(c.raw).digest()),
    ski: colonHex(createHash('sha256').update(spki).digest()),
    notBefore: new Date(c.validFrom),
    notAfter: new Date(c.validTo),
    serial: c.serialNumber.toLowerCase(),
    uris,
    selfSigned: c.checkIssued(c) && c.verify(c.publicKey),
    isCa: c.ca,
  };
}

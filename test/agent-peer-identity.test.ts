// Which agent a peer is, over real TLS: the attacks first — node B's key signing a certificate that names node A's
// agent, with B's intermediate, and again with an expired look-alike of B's intermediate that names A's authority
// slipped into the chain; a self-signed "root" of the peer's own — then the honest cases (a node's own intermediate,
// a root of the bundle).

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { before, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { agentOf } from '../identity/agent-peer.js';
import { nodeAuthorityUri } from '../identity/authority-ids.js';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { generateKeyPair, importPrivateKey, signLeaf } from '../identity/ca/x509-certs.js';
import { agentIdentityUri } from '../identity/spiffe/spiffe-id.js';
import { poolCredentials, type PoolCredentials } from './helpers/pool-credentials.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
let creds: PoolCredentials;

before(async () => {
  creds = await poolCredentials(['A', 'B']);
});

/** A client certificate naming `node`'s agent, signed by `issuer`. */
async function agentLeaf(issuer: { certPem: string; keyPem: string }, node: string) {
  return signLeaf({ issuerCertPem: issuer.certPem, issuerKey: (await importPrivateKey(issuer.keyPem)).key, spiffeId: agentIdentityUri(creds.trustDomain, 'dc1', node), commonName: `${node}.agent`, ttlMs: 3_600_000 });
}

/** Presents `chain` (leaf first) with `key` to a TLS server that trusts the pool's root; what agentOf says, or the handshake's refusal. */
async function present(chain: string[], key: string): Promise<string> {
  const server = createServer({ cert: creds.nodes.A.certPem + creds.root.certPem, key: creds.nodes.A.keyPem, ca: [creds.root.certPem], requestCert: true, rejectUnauthorized: true });
  const verdict = new Promise<string>((resolve) => {
    server.on('secureConnection', (s: TLSSocket) => {
      resolve(JSON.stringify(agentOf(s.getPeerCertificate(true), creds.trustDomain, [creds.root.certPem])));
      s.end();
    });
    server.on('tlsClientError', (e) => resolve(`handshake refused: ${e.message}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, cert: chain.join(''), key, ca: [creds.root.certPem], rejectUnauthorized: false });
  c.on('error', () => undefined);
  c.on('data', () => undefined);
  const out = await verdict;
  c.destroy();
  server.close();
  return out;
}

/** An expired certificate with the subject and key identifier of `like`, naming `uri`, self-signed by a key of its own. */
async function lookAlike(like: string, uri: string): Promise<string> {
  const orig = new x509.X509Certificate(like);
  const ski = orig.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const keys = await generateKeyPair();
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const fake = await x509.X509CertificateGenerator.create({
    serialNumber: '0badc0de', subject: orig.subject, issuer: orig.subject,
    notBefore: new Date(Date.now() - 30 * 86_400_000), notAfter: new Date(Date.now() - 20 * 86_400_000),
    signingKey: keys.privateKey, publicKey: keys.publicKey, signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(ski),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }]),
    ],
  });
  return fake.toString('pem') + '\n';
}

test('node B\'s key cannot speak for node A: with B\'s intermediate, or with an expired look-alike naming A slipped in', async () => {
  const forged = await agentLeaf(creds.nodes.B, 'A');
  const plain = await present([forged.certPem, creds.nodes.B.certPem], forged.keyPem);
  assert.match(plain, /refused/, plain);
  const fake = await lookAlike(creds.nodes.B.certPem, nodeAuthorityUri(creds.trustDomain, 'A'));
  const slipped = await present([forged.certPem, fake, creds.nodes.B.certPem], forged.keyPem);
  assert.match(slipped, /refused/, slipped);
  assert.doesNotMatch(slipped, /"node":"A"/);
});

test('a self-signed "root" of the peer\'s own is no root of the bundle', async () => {
  const own = await CertificateAuthority.createRoot();
  const leaf = await signLeaf({ issuerCertPem: own.certPem, issuerKey: (await importPrivateKey(own.keyPem)).key, spiffeId: agentIdentityUri(creds.trustDomain, 'dc1', 'A'), commonName: 'A.agent', ttlMs: 3_600_000 });
  const out = await present([leaf.certPem, own.certPem], leaf.keyPem);
  assert.match(out, /refused/, out);
});

test('the honest cases: a node\'s agent signed by its own intermediate, and one signed by the bundle\'s root', async () => {
  const a = await agentLeaf(creds.nodes.A, 'A');
  assert.equal(await present([a.certPem, creds.nodes.A.certPem], a.keyPem), '{"node":"A"}');
  const r = await agentLeaf(creds.root, 'B');
  assert.equal(await present([r.certPem], r.keyPem), '{"node":"B"}');
});

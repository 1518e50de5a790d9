// Credentials for a hardened test pool, as an operator makes them: one root, a named intermediate per node, a policy writer's certificate, a gossip key.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeAuthorityUri, policyAuthorityUri } from '../../identity/authority-ids.js';
import { CertificateAuthority } from '../../identity/ca/certificate-authority.js';
import { createIntermediate, createPolicyCert, importPrivateKey } from '../../identity/ca/x509-certs.js';
import { tempDir } from './agent-process.js';

export interface PoolCredentials {
  trustDomain: string;
  root: { certPem: string; keyPem: string; caFile: string; caKeyFile: string };
  /** ca_file / ca_key_file for each node: its intermediate (naming it) followed by the root. */
  nodes: Record<string, { caFile: string; caKeyFile: string; certPem: string; keyPem: string }>;
  policy: { policyCertFile: string; policyKeyFile: string; certPem: string; keyPem: string };
  encrypt: string;
}

export async function poolCredentials(nodes: string[], policyName = 'ops'): Promise<PoolCredentials> {
  const dir = tempDir('nodemesh-pool-');
  const root = await CertificateAuthority.createRoot();
  const rootKey = (await importPrivateKey(root.keyPem)).key;
  const write = (name: string, text: string, mode = 0o644) => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode });
    return p;
  };
  const out: PoolCredentials = {
    trustDomain: root.trustDomain,
    root: { ...root, caFile: write('ca.pem', root.certPem), caKeyFile: write('ca-key.pem', root.keyPem, 0o600) },
    nodes: {},
    policy: undefined as unknown as PoolCredentials['policy'],
    encrypt: randomBytes(32).toString('base64'),
  };
  for (const node of nodes) {
    const inter = await createIntermediate({ issuerCertPem: root.certPem, issuerKey: rootKey, trustDomain: root.trustDomain, uri: nodeAuthorityUri(root.trustDomain, node) });
    out.nodes[node] = { ...inter, caFile: write(`${node}-ca.pem`, inter.certPem + root.certPem), caKeyFile: write(`${node}-ca-key.pem`, inter.keyPem, 0o600) };
  }
  const pol = await createPolicyCert({ issuerCertPem: root.certPem, issuerKey: rootKey, trustDomain: root.trustDomain, uri: policyAuthorityUri(root.trustDomain, policyName) });
  out.policy = { ...pol, policyCertFile: write('policy.pem', pol.certPem + root.certPem), policyKeyFile: write('policy-key.pem', pol.keyPem, 0o600) };
  return out;
}

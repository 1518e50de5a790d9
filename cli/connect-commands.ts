// `nodemesh ca init` and `nodemesh connect check`: make a cluster root, and explain what the mesh would do with a connection.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { NodemeshError } from '../lib/errors.js';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { writePrivate } from '../lib/private-file.js';
import { nodeAuthorityUri, policyAuthorityUri } from '../identity/authority-ids.js';
import { certInfo, createIntermediate, createPolicyCert, importPrivateKey, splitPem } from '../identity/ca/x509-certs.js';
import { isSpiffeSafe } from '../identity/spiffe/spiffe-id.js';
import type { ClientOptions } from './api-client.js';
import { apiCall } from './api-client.js';
import type { Format } from './table.js';

type Globals = () => ClientOptions & { format: Format };

interface LeafJson { Service: string; ServiceURI: string; SerialNumber: string; CertPEM: string; ValidBefore: string }
interface RootsJson { ActiveRootID: string; TrustDomain: string; Roots: { ID: string; RootCert: string; Active: boolean }[] }

/** Verifies a leaf (plus any intermediates in its PEM) up to one of the roots. */
function chainVerifies(leafPem: string, roots: string[]): boolean {
  const chain = splitPem(leafPem).map((p) => new X509Certificate(p));
  const anchors = roots.map((p) => new X509Certificate(p));
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i];
    if (new Date(cert.validTo) < new Date()) return false;
    const root = anchors.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
    if (root) return true;
    const next = chain[i + 1];
    if (!next || !cert.checkIssued(next) || !cert.verify(next.publicKey)) return false;
  }
  return false;
}

/** The cluster root and its key, as `ca init` wrote them. */
async function loadRoot(caFile: string, caKeyFile: string): Promise<{ root: string; key: CryptoKey; trustDomain: string }> {
  let rootPem: string;
  let key: CryptoKey;
  try {
    rootPem = readFileSync(caFile, 'utf8');
    key = (await importPrivateKey(readFileSync(caKeyFile, 'utf8'))).key;
  } catch (e) {
    throw new NodemeshError('CA_INVALID', `cannot load the root CA: ${(e as Error).message}`, 1);
  }
  const root = splitPem(rootPem)[0];
  const td = certInfo(root ?? '').uris.find((u) => u.startsWith('spiffe://'));
  if (!root || !td) throw new NodemeshError('CA_INVALID', `${caFile} holds no root with a spiffe:// trust domain (make one with nodemesh ca init)`, 1);
  return { root, key, trustDomain: new URL(td).host };
}

export function connectCommands(program: Command, g: Globals): void {
  const ca = program.command('ca').description('certificate authority tools');
  ca.command('init').description('create a root CA for a cluster; give its files to every agent as ca_file / ca_key_file')
    .requiredOption('--out <dir>', 'directory to write ca.pem and ca-key.pem into')
    .action(async (o: { out: string }) => {
      const made = await CertificateAuthority.createRoot();
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      const cert = join(o.out, 'ca.pem');
      const key = join(o.out, 'ca-key.pem');
      if (existsSync(cert) || existsSync(key)) {
        throw new NodemeshError('CA_EXISTS', `${o.out} already holds a CA (EEXIST): choose another --out, or move the old files away first`, 1);
      }
      writeFileSync(cert, made.certPem, { mode: 0o644, flag: 'wx' });
      writePrivate(key, made.keyPem);
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify({ trustDomain: made.trustDomain, caFile: cert, caKeyFile: key })}\n`);
      process.stdout.write(`Created a root CA for trust domain ${made.trustDomain}\n  certificate: ${cert}\n  private key: ${key} (mode 0600; keep it secret)\n` +
        `Give every agent: {"ca_file": "${cert}", "ca_key_file": "${key}"}\n`);
    });

  ca.command('issue-intermediate').description('sign a per-node intermediate CA with the cluster root; the node gets ca_file/ca_key_file')
    .requiredOption('--ca-file <file>', 'the cluster root certificate (from ca init)')
    .requiredOption('--ca-key-file <file>', 'the cluster root key')
    .requiredOption('--node <name>', 'the node the intermediate is for')
    .requiredOption('--out <dir>', 'directory to write <node>-ca.pem (intermediate + root) and <node>-ca-key.pem into')
    .action(async (o: { caFile: string; caKeyFile: string; node: string; out: string }) => {
      if (!isSpiffeSafe(o.node)) throw new NodemeshError('CLI_USAGE', `--node ${JSON.stringify(o.node)}: use letters, digits, '.', '_' and '-'`, 2);
      const { root, key, trustDomain } = await loadRoot(o.caFile, o.caKeyFile);
      const inter = await createIntermediate({ issuerCertPem: root, issuerKey: key, trustDomain, uri: nodeAuthorityUri(trustDomain, o.node) });
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      const cert = join(o.out, `${o.node}-ca.pem`);
      const keyPath = join(o.out, `${o.node}-ca-key.pem`);
      if (existsSync(cert) || existsSync(keyPath)) throw new NodemeshError('CA_EXISTS', `${cert} already exists (EEXIST): choose another --out`, 1);
      writeFileSync(cert, inter.certPem + root, { mode: 0o644, flag: 'wx' });
      writePrivate(keyPath, inter.keyPem);
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify({ caFile: cert, caKeyFile: keyPath })}\n`);
      process.stdout.write(`Issued an intermediate CA for node ${o.node}\n  chain: ${cert}\n  key:   ${keyPath} (mode 0600)\n` +
        `Give that node: {"ca_file": "${cert}", "ca_key_file": "${keyPath}"}\n`);
    });

  ca.command('issue-policy').description('sign a policy writer\'s credential with the cluster root: the agent holding it signs intentions and config entries for the pool')
    .requiredOption('--ca-file <file>', 'the cluster root certificate (from ca init)')
    .requiredOption('--ca-key-file <file>', 'the cluster root key')
    .option('--name <name>', 'a name for this writer (shows in logs and in signatures\' chains)', 'ops')
    .requiredOption('--out <dir>', 'directory to write policy-<name>.pem (certificate + root) and policy-<name>-key.pem into')
    .addHelpText('after', '\nExample:\n  nodemesh ca issue-policy --ca-file ca/ca.pem --ca-key-file ca/ca-key.pem --name ops --out ca/\n' +
      '  then on the writer agent: {"policy_cert_file": "ca/policy-ops.pem", "policy_key_file": "ca/policy-ops-key.pem", "operator_token": "..."}\n')
    .action(async (o: { caFile: string; caKeyFile: string; name: string; out: string }) => {
      if (!isSpiffeSafe(o.name)) throw new NodemeshError('CLI_USAGE', `--name ${JSON.stringify(o.name)}: use letters, digits, '.', '_' and '-'`, 2);
      const { root, key, trustDomain } = await loadRoot(o.caFile, o.caKeyFile);
      const made = await createPolicyCert({ issuerCertPem: root, issuerKey: key, trustDomain, uri: policyAuthorityUri(trustDomain, o.name) });
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      const cert = join(o.out, `policy-${o.name}.pem`);
      const keyPath = join(o.out, `policy-${o.name}-key.pem`);
      if (existsSync(cert) || existsSync(keyPath)) throw new NodemeshError('CA_EXISTS', `${cert} already exists (EEXIST): choose another --out or --name`, 1);
      writeFileSync(cert, made.certPem + root, { mode: 0o644, flag: 'wx' });
      writePrivate(keyPath, made.keyPem);
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify({ policyCertFile: cert, policyKeyFile: keyPath })}\n`);
      process.stdout.write(`Issued policy writer credential "${o.name}"\n  certificate: ${cert}\n  key:         ${keyPath} (mode 0600)\n` +
        `Give the writer agent: {"policy_cert_file": "${cert}", "policy_key_file": "${keyPath}", "operator_token": "<a token distinct from acl_token>"}\n`);
    });

  const connect = program.command('connect').description('inspect the service mesh');
  connect.command('check <src> <dst>').description('what would happen if SRC connected to DST, and why; exit 0 allowed, 1 denied')
    .action(async (src: string, dst: string) => {
      const roots = await apiCall(g(), 'GET', '/v1/agent/connect/ca/roots') as RootsJson;
      const dc = ((await apiCall(g(), 'GET', '/v1/agent/self')) as { Config: { Datacenter: string } }).Config.Datacenter;
      // An agent issues leaves only for its own node's services: another node's service shows its identity, no leaf.
      const leaf = async (svc: string) => (apiCall(g(), 'GET', `/v1/agent/connect/ca/leaf/${encodeURIComponent(svc)}`) as Promise<LeafJson>)
        .catch((e: Error & { apiCode?: string }) => { if (e.apiCode === 'LEAF_NOT_LOCAL') return undefined; throw e; });
      const [s, d] = await Promise.all([leaf(src), leaf(dst)]);
      const rootPems = roots.Roots.map((r) => r.RootCert);
      const sOk = s ? chainVerifies(s.CertPEM, rootPems) : undefined;
      const dOk = d ? chainVerifies(d.CertPEM, rootPems) : undefined;
      const uri = (svc: string) => `spiffe://${roots.TrustDomain}/ns/default/dc/${dc}/svc/${svc}`;
      const srcUri = s?.ServiceURI ?? uri(src);
      const authz = await apiCall(g(), 'POST', '/v1/agent/connect/authorize', { Target: dst, ClientCertURI: srcUri }) as { Authorized: boolean; Reason: string };
      const view = (service: string, l: LeafJson | undefined, ok: boolean | undefined) => (l
        ? { service, uri: l.ServiceURI, serial: l.SerialNumber, validBefore: l.ValidBefore, chainValid: ok }
        : { service, uri: uri(service), onThisNode: false });
      const result = {
        source: view(src, s, sOk), destination: view(dst, d, dOk),
        trustDomain: roots.TrustDomain, activeRoot: roots.ActiveRootID, allowed: authz.Authorized && sOk !== false && dOk !== false, reason: authz.Reason,
      };
      if (g().format === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        const rows: [string, string][] = [
          ['Source leaf', leafLine(s, uri(src))],
          ['Destination leaf', leafLine(d, uri(dst))],
          ['Chain', sOk === false || dOk === false ? `INVALID: ${sOk === false ? 'source' : 'destination'} leaf does not verify against the trust bundle`
            : `${s && d ? 'both leaves verify' : s || d ? 'the leaf held here verifies' : 'no leaf held here to verify'} against the trust bundle (active root ${roots.ActiveRootID.slice(0, 23)}…)`],
          ['Intentions', authz.Reason],
          ['Result', result.allowed ? `ALLOWED: ${src} may connect to ${dst}` : `DENIED: ${src} may not connect to ${dst}`],
        ];
        const w = Math.max(...rows.map(([k]) => k.length));
        process.stdout.write(`${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`);
      }
      if (!result.allowed) process.exitCode = 1;
    });
}

function leafLine(l: LeafJson | undefined, uri: string): string {
  return l ? `${l.ServiceURI}  serial ${l.SerialNumber}  valid until ${l.ValidBefore}` : `${uri}  (not on this node: the agent on its node holds its leaf)`;
}

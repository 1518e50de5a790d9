// The agent's security posture, as `nodemesh verify` reports it: encryption, tokens, default policy, key file modes, certificate expiry.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig } from './agent-config.js';
import { isLoopback, type Waiver } from './agent-config.js';

export interface Finding { Check: string; Status: 'ok' | 'warn' | 'fail'; Detail: string }

export interface PostureInput {
  config: AgentConfig;
  dataDir: string;
  backend: 'gossip' | 'consul';
  defaultPolicy: string;
  /** Seconds until each local leaf expires. */
  leafExpiries: { service: string; seconds: number }[];
  /** The CA private key file, when this agent holds one (gossip backend). */
  caKeyFile?: string;
  /** What this agent's keys make it an authority for (gossip backend): the root key, a node's intermediate, and a policy credential. */
  authority?: { holdsRootKey: boolean; policyWriter: string | undefined };
}

/** A private file must be readable by its owner only. */
function modeFinding(check: string, path: string, wantDir = false): Finding {
  try {
    const st = statSync(path);
    const loose = st.mode & (wantDir ? 0o077 : 0o077);
    if (loose) return { Check: check, Status: wantDir ? 'warn' : 'fail', Detail: `${path} is mode ${(st.mode & 0o777).toString(8)}: chmod ${wantDir ? '700' : '600'} ${path}` };
    return { Check: check, Status: 'ok', Detail: `${path} is mode ${(st.mode & 0o777).toString(8)}` };
  } catch (e) {
    return { Check: check, Status: 'warn', Detail: `cannot stat ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
  }
}

export function assessPosture(p: PostureInput): Finding[] {
  const out: Finding[] = [];
  const c = p.config;
  // A protection waived in config on purpose is a warning (the operator chose it); missing without a waiver, a failure.
  const lacking = (w: Waiver): 'warn' | 'fail' => (c.dev || c.waive.includes(w) ? 'warn' : 'fail');
  const waived = (w: Waiver) => (c.waive.includes(w) ? ` (waived in config: "waive": ["${w}"])` : '');
  if (c.dev) out.push({ Check: 'mode', Status: 'warn', Detail: 'dev mode: state in a temporary directory, defaults for a laptop; run with --data-dir and without --dev in production' });
  else out.push({ Check: 'mode', Status: 'ok', Detail: `state in ${p.dataDir}` });

  if (p.backend === 'gossip') {
    const keyring = join(p.dataDir, 'serf', 'local.keyring');
    if (existsSync(keyring)) {
      out.push({ Check: 'gossip encryption', Status: 'ok', Detail: 'AES-GCM with the keyring in the data dir' });
      out.push(modeFinding('gossip keyring file', keyring));
    } else {
      out.push({ Check: 'gossip encryption', Status: lacking('gossip_key'), Detail: `gossip is plaintext${waived('gossip_key')}: anyone on the network can read and forge membership and catalog updates; set encrypt (make a key with \`nodemesh keygen\`)` });
    }
  } else out.push({ Check: 'gossip encryption', Status: 'ok', Detail: 'not used: the Consul backend holds the catalog' });

  if (c.aclToken) out.push({ Check: 'API token', Status: 'ok', Detail: 'API writes and leaf reads need the agent token' });
  else out.push({ Check: 'API token', Status: isLoopback(c.client) && (c.dev || c.waive.includes('acl_token')) ? 'warn' : 'fail', Detail: `no acl_token${waived('acl_token')}: any process that reaches ${c.client}:${c.httpPort} can register services and change intentions; set acl_token` });
  if (p.backend === 'gossip') {
    out.push(c.caFile && c.caKeyFile
      ? { Check: 'mesh CA', Status: 'ok', Detail: `the pool's CA from ${c.caFile}` }
      : { Check: 'mesh CA', Status: lacking('ca_files'), Detail: `a CA of this agent's own${waived('ca_files')}: no other agent trusts its services' certificates; set ca_file and ca_key_file (\`nodemesh ca init\`)` });
    const a = p.authority;
    if (a?.holdsRootKey && c.caFile && !c.dev) {
      out.push({ Check: 'node authority', Status: 'warn', Detail: 'this agent holds the pool\'s root key: it can sign any identity and any policy, so every node given this key is a policy authority and one compromised node rewrites the pool; give each node its own intermediate (`nodemesh ca issue-intermediate --node NAME`) and keep the root key off the nodes' });
    } else if (a && !a.holdsRootKey) out.push({ Check: 'node authority', Status: 'ok', Detail: 'a per-node intermediate: this agent signs only its own node\'s entry and leaves' });
    if (a?.policyWriter) {
      out.push(c.operatorToken
        ? { Check: 'policy writer', Status: 'ok', Detail: `signs intentions and config entries for the pool as "${a.policyWriter}"; writes need operator_token` }
        : { Check: 'policy writer', Status: 'warn', Detail: `signs intentions and config entries for the pool as "${a.policyWriter}", but without operator_token the node's acl_token can change pool-wide policy; set operator_token` });
    }
  }

  out.push(p.defaultPolicy === 'deny'
    ? { Check: 'default intention policy', Status: 'ok', Detail: 'deny: only what an intention allows may connect' }
    : { Check: 'default intention policy', Status: 'warn', Detail: `${p.defaultPolicy}: any service may connect to any other unless an intention denies it; set default_intention_policy "deny"${p.backend === 'consul' ? " (Consul's ACL default policy)" : ''}` });

  if (p.caKeyFile) out.push(modeFinding('CA private key file', p.caKeyFile));
  out.push(modeFinding('data dir', p.dataDir, true));

  if (p.leafExpiries.length === 0) out.push({ Check: 'leaf certificates', Status: 'ok', Detail: 'no local leaf yet' });
  for (const l of p.leafExpiries) {
    if (l.seconds <= 0) out.push({ Check: `leaf ${l.service}`, Status: 'fail', Detail: 'expired: connections to and from it fail; check the CA (renewal is logged)' });
    else if (l.seconds < 3600) out.push({ Check: `leaf ${l.service}`, Status: 'warn', Detail: `expires in ${Math.round(l.seconds / 60)} min and was not renewed yet` });
    else out.push({ Check: `leaf ${l.service}`, Status: 'ok', Detail: `expires in ${(l.seconds / 3600).toFixed(1)} h` });
  }
  return out;
}

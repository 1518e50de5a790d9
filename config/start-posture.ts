// The protections a non-dev agent will not start without — gossip encryption, an API token, the pool's shared CA —
// unless the config waives each by name; a waiver is logged as a warning at every start.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { NodemeshError } from '../lib/errors.js';
import { isLoopback, type AgentConfig, type Waiver } from './agent-config.js';

interface Missing { waiver: Waiver; what: string; fix: string }

/** Throws (exit 2) when a non-dev config lacks a protection it has not waived; warns for each waived one. */
export function checkStartPosture(config: AgentConfig, log: Logger): void {
  if (config.dev) {
    // Dev mode's plaintext gossip and private CA are for one machine: not on an address others can reach.
    if (config.bind !== '' && !isLoopback(config.bind)) {
      throw new NodemeshError('INSECURE_CONFIG', `refusing to start: --dev with --bind ${config.bind} would put dev mode's plaintext gossip and private CA on the network; bind a loopback address (127.0.0.1), or drop --dev and give encrypt, acl_token and ca_file/ca_key_file`, 2);
    }
    return;
  }
  const consulMode = config.consulAddr !== undefined;
  const missing: Missing[] = [];
  // In Consul mode the CA is Consul's and there is no gossip pool: only the API token is ours to require.
  const keyring = config.dataDir !== undefined && existsSync(join(config.dataDir, 'serf', 'local.keyring'));
  if (!consulMode && !config.encrypt && !keyring) {
    missing.push({ waiver: 'gossip_key', what: 'no gossip encryption key: the catalog and intentions would travel in plaintext', fix: 'set "encrypt" (make a key with `nodemesh keygen`, the same on every agent)' });
  }
  if (!config.aclToken) {
    missing.push({ waiver: 'acl_token', what: 'no ACL token: anyone who reaches the HTTP API could write to it', fix: 'set "acl_token" or env NODEMESH_ACL_TOKEN (e.g. head -c 32 /dev/urandom | base64)' });
  }
  if (!consulMode && !(config.caFile && config.caKeyFile)) {
    missing.push({ waiver: 'ca_files', what: 'no shared CA: this agent would make a CA of its own and no other agent would trust it', fix: 'set "ca_file" and "ca_key_file" (make them once with `nodemesh ca init --out DIR`, or a per-node intermediate with `nodemesh ca issue-intermediate`)' });
  }
  const refused = missing.filter((m) => !config.waive.includes(m.waiver));
  for (const m of missing.filter((x) => config.waive.includes(x.waiver))) log.warn({ waived: m.waiver }, `starting with ${m.what} (waived in config)`);
  if (refused.length) {
    throw new NodemeshError('INSECURE_CONFIG', `refusing to start without protections a non-dev agent needs:\n${refused.map((m) => `  - ${m.what}: ${m.fix}, or waive it with "waive": ["${m.waiver}"] (--waive ${m.waiver})`).join('\n')}\n(--dev skips these checks for a local trial)`, 2);
  }
}

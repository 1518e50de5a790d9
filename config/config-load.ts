// Builds the agent's configuration from config files, config dirs, environment and flags (flags win).

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isNodemeshError } from '../lib/errors.js';
import { decodeServiceObject, normalizeService } from '../model/service-definition.js';
import { expandSidecar } from '../model/sidecar-expansion.js';
import type { AgentConfig } from './agent-config.js';
import { CONFIG_KEYS, configError, convertValue, defaultConfig, isLoopback } from './agent-config.js';

export interface ConfigSources {
  /** Flag values by config key (snake_case), as commander parsed them. */
  flags: Record<string, unknown>;
  configFiles: string[];
  configDirs: string[];
  env: NodeJS.ProcessEnv;
}

function readJsonFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw configError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw configError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw configError(`config file ${path} must hold one JSON object`);
  return parsed as Record<string, unknown>;
}

function filesOfDir(dir: string): string[] {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw configError(`config dir ${dir} is not a directory`);
    names = readdirSync(dir);
  } catch (e) {
    if ((e as { code?: string }).code === 'CONFIG_INVALID') throw e;
    throw configError(`cannot read config dir ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return names.filter((n) => n.endsWith('.json')).sort().map((n) => join(dir, n));
}

/** Service definitions in config files get the API's validation, reported as config errors. */
function checkService(def: Record<string, unknown>, key: string, where: string): Record<string, unknown> {
  try {
    const n = normalizeService(decodeServiceObject(def));
    if (n.sidecar) normalizeService(expandSidecar(n.service, n.sidecar, [], '127.0.0.1'));
  } catch (e) {
    if (isNodemeshError(e)) throw configError(`invalid "${key}" in ${where}: ${e.message.trim()}`);
    throw e;
  }
  return def;
}

function applyFile(cfg: AgentConfig, obj: Record<string, unknown>, where: string): void {
  for (const [key, value] of Object.entries(obj)) {
    if (key === 'service') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw configError(`invalid value for "service" in ${where}: must be one service definition object`);
      cfg.services.push(checkService(value as Record<string, unknown>, 'service', where));
      continue;
    }
    if (key === 'services') {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'object' || v === null || Array.isArray(v))) {
        throw configError(`invalid value for "services" in ${where}: must be an array of service definition objects`);
      }
      cfg.services.push(...(value as Record<string, unknown>[]).map((v, i) => checkService(v, `services[${i}]`, where)));
      continue;
    }
    if (key === 'ports') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw configError(`invalid value for "ports" in ${where}: must be an object such as {"http": 8500}`);
      for (const [pk, pv] of Object.entries(value)) {
        if (pk === 'http') cfg.httpPort = convertValue('http_port', pv, where, false) as number;
        else if (pk === 'dns') cfg.dnsPort = convertValue('dns_port', pv, where, false) as number;
        else if (pk === 'metrics') cfg.metricsPort = convertValue('metrics_port', pv, where, false) as number;
        else throw configError(`unknown key "ports.${pk}" in ${where} (supported: ports.http, ports.dns, ports.metrics)`);
      }
      continue;
    }
    if (key === 'addresses') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw configError(`invalid value for "addresses" in ${where}: must be an object such as {"dns": "127.0.0.1"}`);
      for (const [ak, av] of Object.entries(value)) {
        if (ak === 'dns') cfg.dnsAddr = convertValue('dns_addr', av, where, false) as string;
        else if (ak === 'metrics') cfg.metricsAddr = convertValue('metrics_addr', av, where, false) as string;
        else throw configError(`unknown key "addresses.${ak}" in ${where} (supported: addresses.dns, addresses.metrics)`);
      }
      continue;
    }
    const spec = CONFIG_KEYS[key];
    if (!spec) {
      const known = [...Object.keys(CONFIG_KEYS), 'addresses', 'ports', 'service', 'services'].sort();
      const near = closest(key, known);
      throw configError(`unknown key "${key}" in ${where}${near ? ` (did you mean "${near}"?)` : ''} (known keys: ${known.join(', ')})`);
    }
    (cfg as unknown as Record<string, unknown>)[spec.field] = convertValue(key, value, where, false);
  }
}

/** Merges every source in Consul's order: config dirs and files as given, then env, then flags. Throws CONFIG_INVALID. */
export function loadConfig(src: ConfigSources): AgentConfig {
  const cfg = defaultConfig();
  for (const dir of src.configDirs) for (const f of filesOfDir(dir)) applyFile(cfg, readJsonFile(f), f);
  for (const f of src.configFiles) applyFile(cfg, readJsonFile(f), f);
  if (src.env.NODEMESH_ACL_TOKEN) cfg.aclToken = src.env.NODEMESH_ACL_TOKEN;
  // Consul's own variables, as its CLI reads them.
  if (src.env.CONSUL_HTTP_ADDR) cfg.consulAddr = convertValue('consul_addr', src.env.CONSUL_HTTP_ADDR, 'env CONSUL_HTTP_ADDR', true) as string;
  if (src.env.CONSUL_HTTP_TOKEN) cfg.consulToken = src.env.CONSUL_HTTP_TOKEN;
  for (const [key, value] of Object.entries(src.flags)) {
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    const spec = CONFIG_KEYS[key];
    (cfg as unknown as Record<string, unknown>)[spec.field] = convertValue(key, value, `flag --${key.replace(/_/g, '-')}`, true);
  }
  if (!cfg.bind) cfg.bind = cfg.dev ? '127.0.0.1' : '0.0.0.0';
  cfg.defaultIntentionPolicy ??= cfg.dev ? 'allow' : 'deny';
  if (!cfg.dev && !cfg.dataDir) throw configError('data_dir must be set outside dev mode: pass --data-dir DIR (or --dev for a throwaway agent)');
  if (!cfg.aclToken && !isLoopback(cfg.client)) {
    throw configError(`refusing to serve the HTTP API on non-loopback address ${cfg.client} without an ACL token: set acl_token (or --acl-token, or NODEMESH_ACL_TOKEN), or use --client 127.0.0.1`);
  }
  if (cfg.aclToken !== undefined && cfg.aclToken.length < 8) throw configError('invalid value for "acl_token": must be at least 8 characters');
  // Reads: open on a loopback API (the node's own tools), token-only on any other address (Consul's default_policy).
  cfg.aclDefaultPolicy ??= isLoopback(cfg.client) ? 'allow' : 'deny';
  if (cfg.aclDefaultPolicy === 'deny' && !cfg.aclToken) throw configError('acl_default_policy "deny" needs acl_token: without a token nothing could read the API');
  if (src.env.NODEMESH_OPERATOR_TOKEN) cfg.operatorToken = src.env.NODEMESH_OPERATOR_TOKEN;
  if (cfg.operatorToken !== undefined && cfg.operatorToken.length < 8) throw configError('invalid value for "operator_token": must be at least 8 characters');
  if (cfg.operatorToken !== undefined && cfg.operatorToken === cfg.aclToken) throw configError('operator_token must differ from acl_token: a node\'s token must not be able to change the pool\'s policy');
  if (!cfg.policyCertFile !== !cfg.policyKeyFile) throw configError('policy_cert_file and policy_key_file must be given together (make them with `nodemesh ca issue-policy`)');
  return cfg;
}

/** The known key nearest `key` by edit distance (at most 2, or a third of its length), for "did you mean". */
function closest(key: string, known: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const here = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = here;
      }
    }
    return row[b.length];
  };
  const k = key.toLowerCase().replace(/-/g, '_');
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = distance(k, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.name : undefined;
}

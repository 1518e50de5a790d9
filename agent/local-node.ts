// This node as the catalog lists it: its data dir, its stable ID (kept in the data dir) and the address it advertises.

import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../config/agent-config.js';
import { NodemeshError } from '../lib/errors.js';
import type { NodeInfo } from '../model/catalog-types.js';

/** The bind address, or for a wildcard bind the first external IPv4 address (loopback when there is none). */
export function advertiseAddress(bind: string): string {
  if (bind !== '0.0.0.0' && bind !== '::') return bind;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/** The node's ID: made once, then read from the data dir on every start. */
function nodeId(dataDir: string): string {
  const path = join(dataDir, 'node-id');
  try {
    const id = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
  } catch { /* first start */ }
  const id = randomUUID();
  // Write-and-rename: a torn file after a crash must not give the node a new identity.
  writeFileSync(`${path}.tmp`, `${id}\n`, { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
  return id;
}

/** Creates the data dir (0700) if needed and describes this node. */
export function localNode(config: AgentConfig, dataDir: string): NodeInfo {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new NodemeshError('DATA_DIR_UNUSABLE', `cannot create data dir ${dataDir}: ${(e as Error).message}`, 1);
  }
  const address = advertiseAddress(config.bind);
  return {
    ID: nodeId(dataDir), Node: config.node, Address: address, Datacenter: config.datacenter,
    TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
    Meta: { ...config.nodeMeta, 'consul-network-segment': '' },
  };
}

// One real agent (the compiled dist/, plain node) loaded to scale: 50 local services, 1 k remote nodes with 10 k instances, 10 k intentions; prints memory and timings as JSON.

import { mkdtempSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startAgent } from '../dist/agent/agent.js';
import { defaultConfig } from '../dist/config/agent-config.js';
import { decodeServiceObject } from '../dist/model/service-definition.js';
import { Authorizer, withDefault } from '../dist/policy/authorizer.js';

const LOCAL = 50;
const NODES = 1000;
const PER_NODE = 10;
const INTENTIONS = 10_000;
const SERVICES = 1000; // distinct service names across the remote instances

const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const hwmMb = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

const out = {};
const agent = await startAgent({
  ...defaultConfig(), dev: false, node: 'scale-0', bind: '127.0.245.1', client: '127.0.0.1', httpPort: 0, serfLanPort: 0, dnsPort: 0,
  dataDir: mkdtempSync(join(tmpdir(), 'nodemesh-scale-')), defaultIntentionPolicy: 'deny', drainTimeoutMs: 0,
  // One agent alone, measured in-process: no pool to encrypt, no API caller, its own CA (waived by name).
  waive: ['gossip_key', 'acl_token', 'ca_files'],
}, pino({ level: 'silent' }));
global.gc?.();
out.rssIdleMb = rssMb();
out.heapUsedIdleMb = process.memoryUsage().heapUsed / 2 ** 20;

// 50 local services, each with a sidecar (a public listener and a leaf certificate) and one upstream.
let t0 = process.hrtime.bigint();
for (let i = 0; i < LOCAL; i++) {
  await agent.local.registerService(decodeServiceObject({
    Name: `local-${i}`, Port: 10_000 + i, Address: '127.0.245.2',
    Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: `svc-${i}`, LocalBindAddress: '127.0.245.3', LocalBindPort: 30_000 + i }] } } },
  }), { replaceExistingChecks: true });
}
out.registerLocalMs = ms(t0);

// 1 k remote nodes with 10 instances each, applied as replication applies them.
const template = agent.catalog.snapshotNode('scale-0');
const svcTemplate = template.services.find((s) => s.ID === 'local-0');
const checkTemplate = template.checks.find((c) => c.CheckID === 'serfHealth');
const remote = (n, version) => ({
  info: { ...template.info, ID: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`, Node: `node-${n}`, Address: `127.0.246.${n % 250}` },
  version, createIndex: 1, modifyIndex: 1,
  services: Array.from({ length: PER_NODE }, (_, k) => ({ ...svcTemplate, ID: `svc-${(n * PER_NODE + k) % SERVICES}-${n}`, Service: `svc-${(n * PER_NODE + k) % SERVICES}`, Port: 20_000 + k, Address: '' })),
  checks: [{ ...checkTemplate, Node: `node-${n}` }],
});
t0 = process.hrtime.bigint();
for (let n = 0; n < NODES; n++) agent.catalog.applyRemote(remote(n, 1));
out.applyCatalogMs = ms(t0);

// 10 k intentions (unique source/destination pairs), written as the API writes them.
t0 = process.hrtime.bigint();
for (let i = 0; i < INTENTIONS; i += 500) {
  await Promise.all(Array.from({ length: Math.min(500, INTENTIONS - i) }, (_, j) => agent.intentions.create({
    SourceName: `svc-${i + j}`, DestinationName: `svc-${((i + j) * 7919) % SERVICES}`, Action: (i + j) % 3 ? 'allow' : 'deny',
  })));
}
out.createIntentionsMs = ms(t0);
global.gc?.();
out.rssLoadedMb = rssMb();
out.heapUsedLoadedMb = process.memoryUsage().heapUsed / 2 ** 20;
out.externalLoadedMb = process.memoryUsage().external / 2 ** 20;

// A 1 k-instance delta: 100 nodes announce a new version with their 10 instances changed.
t0 = process.hrtime.bigint();
for (let n = 0; n < 100; n++) {
  const snap = remote(n, 2);
  for (const s of snap.services) s.Port += 1;
  agent.catalog.applyRemote(snap);
}
out.applyDelta1kMs = ms(t0);

// Authorization with the data plane's own authorizer: first decision per destination matches its
// intentions (cold), later ones come from the per-source cache (warm, as for every connection after the first).
const authorizer = new Authorizer(withDefault(agent.intentions, 'deny'));
t0 = process.hrtime.bigint();
for (let d = 0; d < SERVICES; d++) authorizer.decide({ service: 'svc-0', namespace: 'default' }, `svc-${d}`);
out.coldMatchPerDestinationUs = (ms(t0) * 1000) / SERVICES;
const N = 1_000_000;
let allowed = 0;
const sources = Array.from({ length: 100 }, (_, i) => ({ service: `svc-${i * 37}`, namespace: 'default' }));
const dests = Array.from({ length: 100 }, (_, i) => `svc-${(i * 7919) % SERVICES}`);
t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) if (authorizer.decide(sources[i % 100], dests[(i >> 7) % 100]).allowed) allowed++;
out.decisionNs = (ms(t0) * 1e6) / N;
out.decisionsAllowed = allowed;
out.peakRssMb = hwmMb();
out.instances = NODES * PER_NODE + LOCAL * 2;
out.intentions = agent.intentions.list().length;
await agent.stop();
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);

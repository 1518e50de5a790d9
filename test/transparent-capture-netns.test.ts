// Transparent capture end to end, in network namespaces this test makes and deletes: two "nodes" (an agent each) and a
// "pod" on each, 198.18.0.0/15 on their veths only. A pod calls api.virtual.consul with no upstream declared and reaches
// the other pod through mTLS; a plaintext call past the mesh is dropped; a deny intention cuts it; rules go with the agent.

import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { launchAgent, type LaunchedAgent } from './helpers/agent-launcher.js';
import { sharedCa, tempDir } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const run = promisify(execFile);
const TAG = `nmtp${process.pid % 10000}`;
const NS = { nodeA: `${TAG}-na`, nodeB: `${TAG}-nb`, podA: `${TAG}-pa`, podB: `${TAG}-pb` };
/** Node A and B on one link; pod A behind node A, pod B behind node B; every address on these veths only. */
const IP = { nodeA: '198.18.1.1', nodeB: '198.18.1.2', nodeAPods: '198.18.2.1', podA: '198.18.2.2', nodeBPods: '198.18.3.1', podB: '198.18.3.2' };
const TOKEN = 'netns-test-token';

const ip = (...args: string[]) => run('ip', args);
const inNs = (ns: string, ...cmd: string[]) => run('ip', ['netns', 'exec', ns, ...cmd], { timeout: 20_000 });

/** Why this test cannot run here (not root, no netns, no nft), or undefined. */
async function unavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  try {
    await run('nft', ['--version']);
  } catch {
    return 'nft is not installed (scripts/install-interop.sh installs nftables)';
  }
  try {
    await ip('netns', 'add', `${TAG}-probe`);
    await ip('netns', 'del', `${TAG}-probe`);
  } catch (e) {
    return `the kernel refuses network namespaces here: ${(e as Error).message.split('\n')[0]}`;
  }
  return undefined;
}

async function layOut(): Promise<void> {
  for (const ns of Object.values(NS)) {
    await ip('netns', 'add', ns);
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  const link = async (a: string, aIf: string, aIp: string, b: string, bIf: string, bIp: string) => {
    await ip('link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b);
    await inNs(a, 'ip', 'addr', 'add', `${aIp}/30`, 'dev', aIf);
    await inNs(b, 'ip', 'addr', 'add', `${bIp}/30`, 'dev', bIf);
    await inNs(a, 'ip', 'link', 'set', aIf, 'up');
    await inNs(b, 'ip', 'link', 'set', bIf, 'up');
  };
  // Interface names carry the tag too (15 characters at most), so two runs side by side never meet.
  await link(NS.nodeA, `${TAG}ab0`, IP.nodeA, NS.nodeB, `${TAG}ab1`, IP.nodeB);
  await link(NS.nodeA, `${TAG}pa0`, IP.nodeAPods, NS.podA, `${TAG}pa1`, IP.podA);
  await link(NS.nodeB, `${TAG}pb0`, IP.nodeBPods, NS.podB, `${TAG}pb1`, IP.podB);
  await inNs(NS.podA, 'ip', 'route', 'add', 'default', 'via', IP.nodeAPods);
  await inNs(NS.podB, 'ip', 'route', 'add', 'default', 'via', IP.nodeBPods);
  await inNs(NS.nodeA, 'ip', 'route', 'add', '198.18.3.0/30', 'via', IP.nodeB);
  await inNs(NS.nodeB, 'ip', 'route', 'add', '198.18.2.0/30', 'via', IP.nodeA);
  for (const ns of [NS.nodeA, NS.nodeB]) await inNs(ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
}

async function tearDown(): Promise<void> {
  for (const ns of Object.values(NS)) await ip('netns', 'del', ns).catch(() => undefined);
}

let skip: string | undefined;
let agentA: LaunchedAgent | undefined;
let agentB: LaunchedAgent | undefined;
let app: ChildProcess | undefined;
let rulesBefore = '';
let intentionId = '';
let argsA: string[] = [];
/** The last answer pod A got through the mesh (its virtual IP is reused after a crash). */
let last: { ip?: string; status?: number; body?: string; error?: string } = {};

/** The agent's API, from inside its node's namespace. */
async function api(ns: string, url: string, method = 'GET', body?: unknown): Promise<string> {
  const args = ['curl', '-sS', '--max-time', '5', '-X', method, '-H', `X-Consul-Token: ${TOKEN}`, ...(body ? ['--data', JSON.stringify(body)] : []), url];
  return (await inNs(ns, ...args)).stdout;
}

/** From pod A: resolve api.virtual.consul at node A's agent, then GET it (or `target`) — what a pod's app would do. */
async function callFromPodA(target?: string): Promise<{ ip?: string; status?: number; body?: string; error?: string }> {
  const script = `
    const { Resolver } = require('node:dns').promises; const http = require('node:http');
    (async () => {
      let host = ${JSON.stringify(target ?? '')};
      if (!host) { const r = new Resolver({ timeout: 2000, tries: 2 }); r.setServers(['${IP.nodeAPods}:8600']); [host] = await r.resolve4('api.virtual.consul'); }
      const req = http.get({ host, port: 80, path: '/', timeout: 3000 }, (res) => {
        let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(JSON.stringify({ ip: host, status: res.statusCode, body: b })));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => console.log(JSON.stringify({ ip: host, error: e.code || e.message })));
    })().catch((e) => console.log(JSON.stringify({ error: e.code || e.message })));`;
  return JSON.parse((await inNs(NS.podA, process.execPath, '-e', script)).stdout.trim().split('\n').pop() ?? '{}');
}

before(async () => {
  skip = await unavailable();
  if (skip) return;
  await tearDown();
  await layOut();
  rulesBefore = (await inNs(NS.nodeA, 'nft', 'list', 'ruleset')).stdout;
  // api's app in pod B.
  app = spawn('ip', ['netns', 'exec', NS.podB, process.execPath, '-e', `require('node:http').createServer((q, s) => s.end('api in pod B')).listen(80, '${IP.podB}')`], { stdio: 'ignore' });
  const ca = await sharedCa();
  // Not dev mode: the agents bind non-loopback addresses, so gossip key, token and the pool's CA are required.
  const common = ['--acl-token', TOKEN, '--encrypt', randomBytes(16).toString('base64'), '--http-port', '8500', '--dns-port', '8600', '--serf-lan-port', '8301'];
  const tproxy = join(tempDir(), 'tproxy.json');
  writeFileSync(tproxy, JSON.stringify({ transparent_proxy: { mode: 'strict' }, ca_file: ca.caFile, ca_key_file: ca.caKeyFile }));
  argsA = [...common, '--data-dir', tempDir(), '--node', 'node-a', '--bind', IP.nodeA, '--client', IP.nodeAPods, '--config-file', tproxy];
  agentA = await launchAgent(argsA, { netns: NS.nodeA });
  agentB = await launchAgent([...common, '--data-dir', tempDir(), '--node', 'node-b', '--bind', IP.nodeB, '--client', IP.nodeBPods, '--config-file', tproxy, '--join', `${IP.nodeA}:8301`], { netns: NS.nodeB });
  await api(NS.nodeA, `http://${IP.nodeAPods}:8500/v1/agent/service/register`, 'PUT', { Name: 'web', Address: IP.podA, Port: 8080, Connect: { SidecarService: {} } });
  await api(NS.nodeB, `http://${IP.nodeBPods}:8500/v1/agent/service/register`, 'PUT', { Name: 'api', Address: IP.podB, Port: 80, Connect: { SidecarService: {} } });
  // Default deny outside dev mode: web may call api.
  intentionId = (JSON.parse(await api(NS.nodeA, `http://${IP.nodeAPods}:8500/v1/connect/intentions`, 'POST', { SourceName: 'web', DestinationName: 'api', Action: 'allow' })) as { ID: string }).ID;
});

after(async () => {
  app?.kill();
  agentA?.proc.kill('SIGTERM');
  agentB?.proc.kill('SIGTERM');
  await Promise.all([agentA?.exited, agentB?.exited]);
  if (!skip) await tearDown();
});

test('a pod calls api.virtual.consul with no upstream declared: captured, carried over mTLS to the other node\'s pod', async (t) => {
  if (skip) return t.skip(skip);
  await waitFor(async () => {
    last = await callFromPodA();
    assert.equal(last.body, 'api in pod B', `pod A reaches api through the mesh (last: ${JSON.stringify(last)})`);
  }, 30_000);
  assert.match(last.ip!, /^2(4\d|5[0-5])\./, 'the name resolved to a virtual IP');
  const rules = (await inNs(NS.nodeA, 'nft', 'list', 'table', 'inet', 'nodemesh')).stdout;
  assert.match(rules, new RegExp(`ip daddr ${last.ip!.replace(/\./g, '\\.')} meta l4proto tcp redirect to :151\\d\\d\\n`), 'a redirect to a transparent listener above port_base');
  // The hop between the nodes is the agents' mTLS: node B saw a tunnel from node A on its public listener.
  const metrics = await api(NS.nodeB, `http://${IP.nodeBPods}:8500/metrics`);
  assert.match(metrics, /nodemesh_proxy_connections_total\{[^}]*direction="inbound"[^}]*source="web"[^}]*\} [1-9]/, 'B counted an inbound mesh connection from web');
});

test('strict: pod A going straight to pod B\'s address (past the mesh) is dropped on node B', async (t) => {
  if (skip) return t.skip(skip);
  const direct = await callFromPodA(IP.podB);
  assert.ok(direct.error, `a plaintext call past the mesh fails (got ${JSON.stringify(direct)})`);
  const rules = (await inNs(NS.nodeB, 'nft', 'list', 'chain', 'inet', 'nodemesh', 'forward')).stdout;
  assert.match(rules, new RegExp(`ip daddr ${IP.podB.replace(/\./g, '\\.')} tcp dport 80 counter packets [1-9]\\d* bytes \\d+ drop`), 'counted by the guard');
  const metrics = await api(NS.nodeB, `http://${IP.nodeBPods}:8500/metrics`);
  assert.match(metrics, new RegExp(`nodemesh_capture_bypass_packets_total\\{address="${IP.podB.replace(/\./g, '\\.')}",port="80",mode="strict"\\} [1-9]`), 'and in the metrics');
});

test('a deny intention cuts the captured path; allowing again restores it', async (t) => {
  if (skip) return t.skip(skip);
  const intention = (action: string) => api(NS.nodeA, `http://${IP.nodeAPods}:8500/v1/connect/intentions/${intentionId}`, 'PUT', { SourceName: 'web', DestinationName: 'api', Action: action });
  await intention('deny');
  await waitFor(async () => {
    const r = await callFromPodA();
    assert.notEqual(r.body, 'api in pod B', `denied (got ${JSON.stringify(r)})`);
  }, 20_000);
  await intention('allow');
  await waitFor(async () => assert.equal((await callFromPodA()).body, 'api in pod B', 'allowed again'), 20_000);
});

test('a crashed agent leaves its rules: calls to virtual IPs are refused at once (no black hole); a restart takes over', async (t) => {
  if (skip) return t.skip(skip);
  agentA!.proc.kill('SIGKILL');
  await agentA!.exited;
  const t0 = Date.now();
  const refused = await callFromPodA(last.ip);
  assert.equal(refused.error, 'ECONNREFUSED', `refused, not hanging (got ${JSON.stringify(refused)})`);
  assert.ok(Date.now() - t0 < 2500, `answered in ${Date.now() - t0} ms`);
  agentA = await launchAgent(argsA, { netns: NS.nodeA });
  await waitFor(async () => assert.equal((await callFromPodA()).body, 'api in pod B', 'the restarted agent carries it again'), 30_000);
});

test('the agent\'s rules go with it: after a stop the node\'s ruleset is as it was', async (t) => {
  if (skip) return t.skip(skip);
  agentA!.proc.kill('SIGTERM');
  assert.equal(await agentA!.exited, 0);
  assert.equal((await inNs(NS.nodeA, 'nft', 'list', 'ruleset')).stdout, rulesBefore);
});

// GET /v1/agent/monitor: the agent's log, streamed as written — to Consul 1.8.7's `consul monitor` in hclog's text
// lines, to `nodemesh monitor` (text or JSON); a token guards it; bad levels are 400s; the stream ends with the agent.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { LogTap, levelNumber } from '../lib/log-tap.js';
import { CLI, runCli, spawnAgent, tempDir, type AgentChild } from './helpers/agent-process.js';
import { CONSUL_BIN, consulMissing } from './helpers/consul-dev.js';
import { waitFor } from './helpers/wait-for.js';

test('the tap renders pino lines as hclog text and JSON, filters by level, ignores garbage, drops a listener that throws', () => {
  const tap = new LogTap();
  const text: string[] = [];
  const json: string[] = [];
  tap.subscribe(levelNumber('info')!, false, (l) => text.push(l));
  tap.subscribe(levelNumber('DEBUG')!, true, (l) => json.push(l));
  tap.subscribe(10, false, () => { throw new Error('gone'); });
  assert.equal(tap.listening, 3);
  const time = Date.parse('2026-12-03T18:00:00.000Z');
  tap.write(`${JSON.stringify({ level: 30, time, pid: 1, msg: 'service registered', service: 'web', note: 'two words' })}\n`);
  tap.write(`${JSON.stringify({ level: 20, time, pid: 1, component: 'k8s-pods', msg: 'pod seen' })}\n`);
  tap.write('not json at all');
  assert.equal(tap.listening, 2, 'the throwing listener is gone');
  assert.deepEqual(text, ['2026-12-03T18:00:00.000Z [INFO]  agent: service registered: service=web note="two words"\n']);
  assert.deepEqual(json.map((l) => JSON.parse(l) as Record<string, unknown>), [
    { '@level': 'info', '@message': 'service registered', '@module': 'agent', '@timestamp': '2026-12-03T18:00:00.000Z', service: 'web', note: 'two words' },
    { '@level': 'debug', '@message': 'pod seen', '@module': 'agent.k8s-pods', '@timestamp': '2026-12-03T18:00:00.000Z' },
  ]);
  assert.equal(levelNumber('bogus'), undefined);
});

const TOKEN = 'monitor-token-7f3a';
let agent: AgentChild;
const skipConsul = consulMissing() !== undefined;

before(async () => {
  agent = await spawnAgent(['--node', 'mon-a', '--bind', '127.0.26.1', '--data-dir', tempDir(), '--log-level', 'debug', '--acl-token', TOKEN, '--waive', 'gossip_key', '--waive', 'ca_files']);
});
after(() => {
  if (agent?.proc.exitCode === null) agent.proc.kill('SIGKILL');
});

const api = (path: string, init: RequestInit = {}) => fetch(`${agent.url}${path}`, { ...init, headers: { 'X-Consul-Token': TOKEN, ...init.headers } });

/** Runs a command until `until` matches its output or 20 s pass, poking the agent meanwhile; returns what it printed. */
function follow(cmd: string, args: string[], env: Record<string, string>, until: RegExp, poke: () => Promise<unknown>): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    // The command attaches when it has started (a second or more on a busy machine): poke until its output shows it.
    const poking = setInterval(() => void poke(), 500);
    const t = setTimeout(() => { clearInterval(poking); p.kill('SIGKILL'); reject(new Error(`no match for ${until} in:\n${out}`)); }, 20_000);
    const check = () => { if (until.test(out)) { clearTimeout(t); clearInterval(poking); p.kill('SIGINT'); resolve(out); } };
    p.stdout.on('data', (c) => { out += c; check(); });
    p.stderr.on('data', (c) => { out += c; });
  });
}

test('consul monitor (Consul 1.8.7) follows a nodemesh agent\'s log in hclog lines', { skip: skipConsul }, async () => {
  const out = await follow(CONSUL_BIN, ['monitor'], { CONSUL_HTTP_ADDR: agent.url, CONSUL_HTTP_TOKEN: TOKEN }, /agent: service registered: service=mon-consul/,
    () => api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'mon-consul', Port: 9 }) }));
  assert.match(out, /^\d{4}-\d\d-\d\dT[\d:.]+Z \[INFO\]  agent: service registered: service=mon-consul/m);
  assert.doesNotMatch(out, new RegExp(TOKEN));
});

test('nodemesh monitor --format json --log-level debug streams JSON lines, debug included', async () => {
  const out = await follow(process.execPath, [CLI, 'monitor', '--http-addr', agent.url, '--token', TOKEN, '--format', 'json', '--log-level', 'debug'], {}, /"mon-json"/,
    () => api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'mon-json', Port: 9 }) }));
  const lines = out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { '@level': string; '@message': string });
  assert.ok(lines.some((l) => l['@message'] === 'service registered'), out);
  assert.ok(lines.every((l) => ['trace', 'debug', 'info', 'warn', 'error'].includes(l['@level'])));
  assert.doesNotMatch(out, new RegExp(TOKEN));
});

test('bad requests: unknown level is a 400 naming it, no token or a wrong one a 403; the agent keeps running', async () => {
  const bad = await api('/v1/agent/monitor?loglevel=bogus');
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /Unknown log level: bogus/);
  assert.equal((await api('/v1/agent/monitor?logjson=maybe')).status, 400);
  assert.equal((await fetch(`${agent.url}/v1/agent/monitor`)).status, 403);
  assert.equal((await fetch(`${agent.url}/v1/agent/monitor`, { headers: { 'X-Consul-Token': 'wrong' } })).status, 403);
  const cli = await runCli(['monitor', '--http-addr', agent.url, '--token', TOKEN, '--log-level', 'loud']);
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /loud.*(trace|Allowed choices)/s);
  assert.equal((await api('/v1/agent/self')).status, 200);
});

test('monitors that go away do not hold the agent up; one still attached ends when the agent stops, and says so', async () => {
  // Ten monitors that connect and vanish at once.
  for (let i = 0; i < 10; i++) {
    const c = new AbortController();
    const r = await api('/v1/agent/monitor', { signal: c.signal });
    assert.equal(r.status, 200);
    c.abort();
  }
  const p = spawn(process.execPath, [CLI, 'monitor', '--http-addr', agent.url, '--token', TOKEN], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  p.stderr.on('data', (c) => { err += c; });
  p.stdout.on('data', (c) => { out += c; });
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  // Attached once a poke shows up in its output.
  await waitFor(async () => {
    await api('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'mon-attached', Port: 9 }) });
    assert.match(out, /mon-attached/, 'the monitor is attached');
  }, 20_000);
  agent.proc.kill('SIGTERM');
  assert.equal(await exited, 0);
  await waitFor(() => assert.match(err, /the agent ended the monitor/, 'says why it ended'), 5000);
  await agent.exited;
});

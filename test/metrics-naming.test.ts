// The metrics listener (ports.metrics) and what it serves: after real L4 and L7 traffic between two agents, every
// nodemesh_* family follows Prometheus's naming rules (units in base units and in the name, counters end in _total,
// no unit label), request metrics exist on the caller's and the callee's agent, and the Flagger MetricTemplates in
// docs/traffic-management.md select real series. The listener is read-only and refuses anything else.
// Agents: 127.0.28.1 (web), 127.0.28.2 (api, protocol http); api's app 127.0.28.11, web 127.0.28.21.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../config/config-load.js';
import { put, ROOT, runCli, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { parseFamilies, parseSeries, sampleSum, type Series } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait-for.js';

let a: TestAgent;
let b: TestAgent;
let app: Server;
let upstream = 0;

function call(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: upstream, path, localAddress: '127.0.28.21' }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    r.on('error', reject);
    r.end();
  });
}

const scrape = async (x: TestAgent) => (await fetch(`http://127.0.28.${x === a ? 1 : 2}:${x.metricsPort}/metrics`)).text();

before(async () => {
  const ca = await sharedCa();
  b = await startTestAgent({ node: 'mn-b', bind: '127.0.28.2', metricsPort: 0, metricsAddr: '127.0.28.2', ...ca });
  a = await startTestAgent({ node: 'mn-a', bind: '127.0.28.1', metricsPort: 0, metricsAddr: '127.0.28.1', join: [`127.0.28.2:${b.gossip.port}`], ...ca });
  app = createServer((req, res) => { req.resume(); res.writeHead(req.url === '/fail' ? 503 : 200).end('ok'); });
  await new Promise<void>((r) => app.listen(0, '127.0.28.11', r));
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.28.11', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  assert.equal((await a.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }))).status, 200);
  // An L7 intention: the callee's agent reads each request too, so both sides count it.
  assert.equal((await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }) })).status, 200);
  // Both agents hold the protocol and the intention before any request, so every request is read as HTTP on both sides.
  await waitFor(async () => {
    assert.equal((await b.api('/v1/config/service-defaults/api')).status, 200, 'b has the protocol');
    assert.equal(((await (await b.api('/v1/connect/intentions')).json()) as unknown[]).length, 1, 'b has the intention');
  }, 15_000);
  upstream = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.28.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }));
  await waitFor(async () => assert.equal(await call('/'), 200, 'web reaches api through both agents'), 20_000);
  for (let i = 0; i < 20; i++) assert.equal(await call(`/items/${i}`), 200);
  assert.equal(await call('/fail'), 503);
});

after(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  app?.close();
});

/** Prometheus's rules (prometheus.io/docs/practices/naming), as a scraper and promtool's lint read them. */
function namingProblems(text: string): string[] {
  const problems: string[] = [];
  const fams = parseFamilies(text);
  const series = parseSeries(text);
  // nodemesh's own families; process_* and nodejs_* are prom-client's standard names, scraped as they are everywhere.
  for (const f of fams.filter((x) => x.name.startsWith('nodemesh_') || x.name.startsWith('x_'))) {
    const n = f.name;
    if (!/^[a-z][a-z0-9_]*$/.test(n)) problems.push(`${n}: not snake_case`);
    if (!f.help.trim()) problems.push(`${n}: no HELP`);
    if (!['counter', 'gauge', 'histogram', 'summary'].includes(f.type)) problems.push(`${n}: TYPE ${f.type}`);
    if (f.type === 'counter' && !n.endsWith('_total')) problems.push(`${n}: a counter must end in _total`);
    if (f.type !== 'counter' && n.endsWith('_total')) problems.push(`${n}: only counters end in _total`);
    if (/_(ms|msec|millis|milliseconds|microseconds|us|ns|nanoseconds|minutes|hours|days|kb|mb|gb|kilobytes|megabytes|percent)(_|$)/.test(n)) problems.push(`${n}: not a base unit`);
    if (/(duration|latency|_time|elapsed|lifetime|_age)$/.test(n.replace(/_total$/, ''))) problems.push(`${n}: a time without _seconds`);
    if (f.type === 'histogram' && !/_(seconds|bytes|ratio)$/.test(n) && !/_(entries|size)$/.test(n)) problems.push(`${n}: a histogram without a unit`);
  }
  const labelNames = new Set(series.filter((s) => !/^(process|nodejs)_/.test(s.name)).flatMap((s: Series) => Object.keys(s.labels)));
  for (const l of labelNames) {
    if (!/^[a-z][a-z0-9_]*$/.test(l)) problems.push(`label ${l}: not snake_case`);
    if (['unit', 'units', 'type_unit'].includes(l)) problems.push(`label ${l}: a unit belongs in the metric name`);
  }
  return problems;
}

test('every family on the metrics listener follows Prometheus\'s naming rules (units, _total, no unit label)', async () => {
  for (const x of [a, b]) {
    const text = await scrape(x);
    assert.deepEqual(namingProblems(text), []);
    const names = new Set(parseFamilies(text).map((f) => f.name));
    for (const n of ['nodemesh_gossip_udp_packets_total', 'nodemesh_gossip_udp_bytes_total', 'nodemesh_gossip_dropped_packets_total', 'nodemesh_l7_request_duration_seconds', 'nodemesh_proxy_connection_duration_seconds']) {
      assert.ok(names.has(n), `${n} exported`);
    }
    assert.ok(!names.has('nodemesh_l7_request_duration_ms') && !names.has('nodemesh_gossip_udp'), 'old names are gone');
  }
  // The checker finds what it should: a counter without _total, milliseconds, a unit label.
  const bad = '# HELP x_requests requests\n# TYPE x_requests counter\nx_requests 1\n# HELP x_latency_ms ms\n# TYPE x_latency_ms histogram\nx_latency_ms_count 1\n# HELP x_udp u\n# TYPE x_udp gauge\nx_udp{unit="bytes"} 1\n';
  assert.equal(namingProblems(bad).length, 4, namingProblems(bad).join('; '));
});

test('request metrics on both agents: the caller\'s (outbound, with code, method and where it went) and the callee\'s (inbound)', async () => {
  const ta = await scrape(a);
  assert.equal(sampleSum(ta, 'nodemesh_l7_requests_total', { direction: 'outbound', source: 'web', destination: 'api', destination_service: 'api', method: 'GET', code: '200', code_class: '2xx' }), 21);
  assert.equal(sampleSum(ta, 'nodemesh_l7_requests_total', { direction: 'outbound', destination: 'api', destination_service: 'api', code: '503', code_class: '5xx' }), 1);
  assert.equal(sampleSum(ta, 'nodemesh_l7_request_duration_seconds_count', { direction: 'outbound', source: 'web', destination: 'api', destination_service: 'api' }), 22);
  const tb = await scrape(b);
  assert.equal(sampleSum(tb, 'nodemesh_l7_requests_total', { direction: 'inbound', source: 'web', destination: 'api', method: 'GET', code: '200' }), 21);
  assert.equal(sampleSum(tb, 'nodemesh_l7_requests_total', { direction: 'inbound', source: 'web', destination: 'api', code: '503' }), 1);
  // L4: the allowed connections, with bytes and lifetimes, per edge, on the callee's side.
  assert.ok(sampleSum(tb, 'nodemesh_proxy_connections_total', { direction: 'inbound', source: 'web', destination: 'api' }) >= 1);
});

test('GET /v1/agent/edges: each agent\'s last minute per edge — the caller\'s view and the callee\'s agree', async () => {
  interface Edge { direction: string; source: string; destination: string; service: string; requests: number; successRate: number | null; p99Ms: number | null }
  const edges = async (x: TestAgent) => ((await (await x.api('/v1/agent/edges')).json()) as { Node: string; Edges: Edge[] }).Edges;
  const out = (await edges(a)).find((e) => e.direction === 'outbound' && e.source === 'web' && e.destination === 'api' && e.service === 'api')!;
  assert.equal(out.requests, 22);
  assert.equal(out.successRate, 21 / 22);
  assert.ok(out.p99Ms !== null && out.p99Ms > 0);
  const inbound = (await edges(b)).filter((e) => e.direction === 'inbound' && e.source === 'web' && e.destination === 'api');
  assert.equal(inbound.reduce((n, e) => n + e.requests, 0), 22, 'the callee counted the same requests');
});

test('nodemesh top --once: the pool\'s edges in an aligned table; --format json for scripts; a bad --interval is refused', async () => {
  // What the agent says of web → api (its early 503s, before api was known, count too).
  const graph = (await (await a.api('/v1/pool/topology')).json()) as { Edges: { source: string; destination: string; successRate: number; requestsPerSecond: number }[] };
  const webApi = graph.Edges.find((x) => x.source === 'web' && x.destination === 'api')!;
  assert.ok(webApi.successRate > 0.8 && webApi.successRate < 1);
  const top = await runCli(['top', '--once', '--http-addr', a.url]);
  assert.equal(top.code, 0, top.stderr);
  const lines = top.stdout.split('\n');
  assert.match(lines[1], /^SOURCE\s+DESTINATION\s+RPS\s+SUCCESS\s+P50\s+P99\s+OPEN\s+TX\s+RX\s+DENIED/);
  const row = lines.find((l) => /^web\s+api\s/.test(l));
  assert.ok(row, top.stdout);
  assert.ok(row.includes(`${(webApi.successRate * 100).toFixed(2)}%`), `the success rate the agent computed, in ${row}`);
  // Columns line up: DESTINATION starts at the same offset in the header and the row.
  assert.equal(row.indexOf('api'), lines[1].indexOf('DESTINATION'));
  const json = await runCli(['top', '--format', 'json', '--http-addr', b.url]);
  const t = JSON.parse(json.stdout) as { Edges: { source: string; destination: string; successRate: number }[]; Unreachable: unknown[] };
  assert.deepEqual(t.Unreachable, []);
  assert.equal(t.Edges.find((x) => x.source === 'web' && x.destination === 'api')?.successRate, webApi.successRate, 'b answers for the pool: the callers\' side, from a');
  const bad = await runCli(['top', '--interval', '1ms', '--http-addr', a.url]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /at least 500ms/);
});

test('the Flagger MetricTemplates in docs/traffic-management.md select series that exist', async () => {
  const doc = readFileSync(join(ROOT, 'docs', 'traffic-management.md'), 'utf8');
  const selectors = [...doc.matchAll(/(nodemesh_[a-z0-9_]+)\{((?:[^{}]|\{\{[^}]*\}\})*)\}/g)].filter((m) => m[2].includes('{{ target }}'));
  assert.ok(selectors.length >= 3, 'the templates are in the doc');
  const series = parseSeries(await scrape(a));
  for (const [, name, matchers] of selectors) {
    const wanted = [...matchers.replace(/\{\{ target \}\}/g, 'api').matchAll(/([a-z_]+)(!=|=)"([^"]*)"/g)];
    const hit = series.some((s) => s.name === name && wanted.every(([, k, op, v]) => (op === '=' ? s.labels[k] === v : s.labels[k] !== v)));
    assert.ok(hit, `${name}{${matchers}} selects a series`);
  }
});

test('the Grafana dashboard in docs/ selects metrics and labels a real agent exports', async () => {
  const dash = JSON.parse(readFileSync(join(ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  const series = parseSeries(await scrape(a));
  const families = new Set(parseFamilies(await scrape(a)).map((f) => f.name));
  const labelsOf = (metric: string) => new Set(series.filter((s) => s.name === metric || s.name.startsWith(`${metric}_`)).flatMap((s) => Object.keys(s.labels)));
  assert.ok(dash.panels.length >= 8);
  for (const p of dash.panels) {
    for (const t of p.targets) {
      const used = [...t.expr.matchAll(/\b(nodemesh_[a-z0-9_]+?)(?:_bucket)?\b/g)].map((m) => m[1]);
      assert.ok(used.length > 0, `${p.title}: names a nodemesh metric`);
      for (const m of used) {
        assert.ok(families.has(m), `${p.title}: ${m} is exported`);
        const labels = labelsOf(m);
        // A family with no series yet (no connection open in this test's L7 traffic) shows no labels to check.
        if (labels.size === 0) continue;
        for (const by of t.expr.matchAll(/by \(([^)]*)\)/g)) {
          for (const l of by[1].split(',').map((x) => x.trim()).filter((x) => x && x !== 'le')) assert.ok(labels.has(l), `${p.title}: ${m} has label ${l}`);
        }
      }
    }
  }
});

test('the metrics listener is read-only and serves /metrics only; its config is checked', async () => {
  const base = `http://127.0.28.1:${a.metricsPort}`;
  assert.equal((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status, 405);
  assert.equal((await fetch(`${base}/v1/agent/self`)).status, 404);
  const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.match(head.headers.get('content-type') ?? '', /text\/plain/);
  const src = { configFiles: [], configDirs: [], env: {} };
  assert.throws(() => loadConfig({ ...src, flags: { dev: true, metrics_port: 'lots' } }), /metrics_port/);
  assert.throws(() => loadConfig({ ...src, flags: { dev: true, metrics_addr: 'not-an-ip' } }), /metrics_addr/);
  assert.equal(loadConfig({ ...src, flags: { dev: true } }).metricsPort, -1, 'off unless asked for');
});

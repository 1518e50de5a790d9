// `nodemesh agent` refuses bad configuration before binding anything: exit status 2 and a message naming key and value.

import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../config/config-load.js';
import { runCli, spawnAgent, tempDir } from './helpers/agent-process.js';

const base = { configFiles: [], configDirs: [], env: {} };

test('flags override config files, which override defaults', () => {
  const dir = tempDir();
  const f = join(dir, 'a.json');
  writeFileSync(f, JSON.stringify({ node: 'from-file', datacenter: 'east', http_port: 9000, data_dir: dir }));
  const cfg = loadConfig({ ...base, configFiles: [f], flags: { node: 'from-flag', http_port: '9100' } });
  assert.equal(cfg.node, 'from-flag');
  assert.equal(cfg.datacenter, 'east');
  assert.equal(cfg.httpPort, 9100);
  assert.equal(cfg.dataDir, dir);
});

test('config dirs are read in name order, Consul aliases accepted', () => {
  const dir = tempDir();
  writeFileSync(join(dir, '10-a.json'), JSON.stringify({ node_name: 'a', dev: true }));
  writeFileSync(join(dir, '20-b.json'), JSON.stringify({ node_name: 'b', ports: { http: 8600 }, service: { name: 'web', port: 80 } }));
  writeFileSync(join(dir, 'ignored.txt'), 'not json');
  const cfg = loadConfig({ ...base, configDirs: [dir], flags: {} });
  assert.equal(cfg.node, 'b');
  assert.equal(cfg.httpPort, 8600);
  assert.equal(cfg.services.length, 1);
});

for (const [name, content, pattern] of [
  ['unknown key', { bogus_key: 1 }, /unknown key "bogus_key"/],
  ['a misspelt key, with the nearest one suggested', { retry_jion: ['x'] }, /unknown key "retry_jion".*did you mean "retry_join"\?/],
  ['a key spelt with dashes', { 'data-dir': '/x' }, /did you mean "data_dir"\?/],
  ['port of the wrong type', { http_port: 'abc' }, /invalid value for "http_port".*"abc"/],
  ['port out of range', { http_port: 70000 }, /invalid value for "http_port".*70000/],
  ['bad log level', { log_level: 'loud' }, /invalid value for "log_level".*"loud"/],
  ['bad bind address', { bind: 'not-an-ip' }, /invalid value for "bind".*"not-an-ip"/],
  ['bad datacenter', { datacenter: 'DC 1' }, /invalid value for "datacenter"/],
  ['bad service definition', { service: { port: 80 } }, /invalid "service".*Missing service name/],
  ['bad sidecar definition', { services: [{ name: 'web', connect: { sidecar_service: { kind: 'typical' } } }] }, /invalid "services\[0\]".*sidecar_service can't have Kind/],
  ['non-loopback API without token', { client: '0.0.0.0' }, /refusing to serve the HTTP API on non-loopback/],
  ['DNS port out of range', { ports: { dns: -5 } }, /invalid value for "dns_port".*-5.*-1 to turn it off/],
  ['a recursor that is a name', { recursors: ['dns.example'] }, /invalid value for "recursors".*IP addresses/],
] as const) {
  test(`invalid config: ${name} → exit 2 with a message naming it`, async () => {
    const dir = tempDir();
    const f = join(dir, 'bad.json');
    writeFileSync(f, JSON.stringify(content));
    const r = await runCli(['agent', '--dev', '--http-port', '0', '--config-file', f]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stdout, /agent running/);
  });
}

test('DNS and capture keys: ports.dns, recursors, domain, dns_config, virtual_ip_range, transparent_proxy; bad values named', () => {
  const dir = tempDir();
  const f = join(dir, 'dns.json');
  writeFileSync(f, JSON.stringify({
    ports: { dns: 8653 }, addresses: { dns: '127.0.0.9' }, recursors: ['127.0.0.53', '127.0.0.54:5353', '[::1]:53'], domain: 'Mesh.Internal.',
    dns_config: { only_passing: true, node_ttl: '10s', service_ttl: { '*': '5s', Web: '1m' }, udp_answer_limit: 5, enable_truncate: true },
    virtual_ip_range: '240.10.0.0/16',
  }));
  const cfg = loadConfig({ ...base, configFiles: [f], flags: { dev: true } });
  assert.equal(cfg.dnsPort, 8653);
  assert.equal(cfg.dnsAddr, '127.0.0.9');
  assert.deepEqual(cfg.recursors, ['127.0.0.53', '127.0.0.54:5353', '[::1]:53']);
  assert.equal(cfg.domain, 'mesh.internal');
  assert.deepEqual(cfg.dnsConfig, { onlyPassing: true, nodeTtlS: 10, serviceTtlS: { '*': 5, web: 60 }, udpAnswerLimit: 5, enableTruncate: true });
  assert.equal(loadConfig({ ...base, flags: { dev: true, dns_port: '-1' } }).dnsPort, -1, '-1 turns DNS off');
  assert.equal(cfg.transparentProxy, undefined, 'capture is off unless asked for');
  writeFileSync(f, JSON.stringify({ transparent_proxy: { mode: 'permissive', exclude_inbound_ports: [22, 22] } }));
  assert.deepEqual(loadConfig({ ...base, configFiles: [f], flags: { dev: true } }).transparentProxy, { mode: 'permissive', portBase: 15100, excludeOutboundPorts: [], excludeInboundPorts: [22] });
  for (const [bad, pattern] of [
    [{ dns_config: { allow_stale: true } }, /unknown key "allow_stale"/],
    [{ dns_config: { node_ttl: 10 } }, /node_ttl must be a duration/],
    [{ dns_config: { udp_answer_limit: 0 } }, /udp_answer_limit must be an integer from 1 to 64/],
    [{ dns_config: [] }, /must be an object/],
    [{ domain: 'not a domain' }, /"domain".*DNS name/],
    [{ virtual_ip_range: '240.0.0.0/31' }, /IPv4 CIDR from \/1 to \/30/],
    [{ virtual_ip_range: '300.0.0.0/4' }, /IPv4 CIDR/],
    [{ recursors: '127.0.0.1:99999' }, /"recursors"/],
    [{ addresses: { dns: 'nowhere' } }, /invalid value for "dns_addr"/],
    [{ addresses: { http: '127.0.0.1' } }, /unknown key "addresses.http"/],
    [{ transparent_proxy: true }, /"transparent_proxy".*\{\} turns capture on/],
    [{ transparent_proxy: { mode: 'loose' } }, /mode must be "strict" or "permissive"/],
    [{ transparent_proxy: { port_base: 80 } }, /port_base must be an integer from 1024/],
    [{ transparent_proxy: { exclude_outbound_ports: [0] } }, /exclude_outbound_ports must be a list of ports/],
    [{ transparent_proxy: { redirect: 'all' } }, /unknown key "redirect"/],
  ] as const) {
    writeFileSync(f, JSON.stringify(bad));
    assert.throws(() => loadConfig({ ...base, configFiles: [f], flags: { dev: true } }), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && pattern.test(e.message), JSON.stringify(bad));
  }
});

test('invalid JSON config file and bad flag values exit 2', async () => {
  const dir = tempDir();
  const f = join(dir, 'broken.json');
  writeFileSync(f, '{"node": ');
  let r = await runCli(['agent', '--dev', '--config-file', f]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /broken\.json is not valid JSON/);
  r = await runCli(['agent', '--dev', '--http-port', 'eighty']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /flag --http-port.*"eighty"/);
  r = await runCli(['agent', '--config-dir', join(dir, 'missing')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot read config dir/);
  r = await runCli(['agent']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /data_dir must be set outside dev mode/);
});

test('services from a config dir are registered at start', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'conf'));
  writeFileSync(join(dir, 'conf', 'web.json'), JSON.stringify({ services: [{ name: 'web', port: 8080, tags: ['v1'] }, { Name: 'db', Port: 5432 }] }));
  const a = await spawnAgent(['--dev', '--config-dir', join(dir, 'conf')]);
  try {
    const services = await (await fetch(`${a.url}/v1/agent/services`)).json() as Record<string, { Port: number; Tags: string[] }>;
    assert.deepEqual(Object.keys(services).sort(), ['db', 'web']);
    assert.deepEqual(services.web.Tags, ['v1']);
  } finally {
    a.proc.kill('SIGTERM');
    assert.equal(await a.exited, 0);
  }
});

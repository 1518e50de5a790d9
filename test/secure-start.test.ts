// A non-dev agent refuses to start without a gossip key, an ACL token and the shared CA files, saying what to do for
// each; a waiver in config lets it start with a warning per protection; Consul mode needs only the token; --dev skips it.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { CLI, runCli, sharedCa, spawnAgent, tempDir } from './helpers/agent-process.js';

const base = (dir: string) => ['agent', '--http-port', '0', '--serf-lan-port', '0', '--bind', '127.0.96.1', '--data-dir', join(dir, 'data')];

test('non-dev without gossip key, token and CA files: exit 2, each named with what to do, nothing started', async () => {
  const dir = tempDir();
  const r = await runCli(base(dir));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /refusing to start without protections a non-dev agent needs/);
  assert.match(r.stderr, /no gossip encryption key.*nodemesh keygen.*--waive gossip_key/);
  assert.match(r.stderr, /no ACL token.*NODEMESH_ACL_TOKEN.*--waive acl_token/);
  assert.match(r.stderr, /no shared CA.*nodemesh ca init --out DIR.*--waive ca_files/);
  assert.match(r.stderr, /--dev skips these checks/);
  // Only what is missing is named.
  const key = randomBytes(32).toString('base64');
  const r2 = await runCli([...base(dir), '--encrypt', key], { NODEMESH_ACL_TOKEN: 'a-token-of-some-length' });
  assert.equal(r2.code, 2);
  assert.doesNotMatch(r2.stderr, /gossip encryption key|ACL token/);
  assert.match(r2.stderr, /no shared CA/);
});

test('each protection can be waived by name: the agent starts and warns for each; a hardened config starts without warnings', async () => {
  const dir = tempDir();
  const a = await spawnAgent(['--bind', '127.0.96.2', '--data-dir', join(dir, 'data'), '--waive', 'gossip_key', '--waive', 'acl_token', '--waive', 'ca_files']);
  for (const w of ['gossip_key', 'acl_token', 'ca_files']) assert.match(a.output(), new RegExp(`"waived":"${w}".*waived in config`));
  a.proc.kill('SIGTERM');
  assert.equal(await a.exited, 0);

  const { caFile, caKeyFile } = await sharedCa();
  const b = await spawnAgent(['--bind', '127.0.96.3', '--data-dir', join(dir, 'data-b'), '--encrypt', randomBytes(32).toString('base64'), '--acl-token', 'hardened-token-1',
    '--config-file', writeJson(dir, { ca_file: caFile, ca_key_file: caKeyFile })], {}, { autoWaive: false });
  assert.doesNotMatch(b.output(), /waived/);
  b.proc.kill('SIGTERM');
  assert.equal(await b.exited, 0);
});

test('Consul mode needs only the token; a bad waiver name is a config error; --dev starts on loopback only', async () => {
  const dir = tempDir();
  const r = await runCli([...base(dir), '--consul-addr', 'http://127.0.96.9:1']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no ACL token/);
  assert.doesNotMatch(r.stderr, /gossip encryption key|no shared CA/);
  const bad = await runCli([...base(dir), '--waive', 'tls']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid value for "waive".*gossip_key, acl_token, ca_files/);
  const exposed = await runCli(['agent', '--dev', '--http-port', '0', '--serf-lan-port', '0', '--bind', '0.0.0.0']);
  assert.equal(exposed.code, 2);
  assert.match(exposed.stderr, /--dev with --bind 0\.0\.0\.0 would put dev mode's plaintext gossip and private CA on the network/);
  const dev = spawnSync(process.execPath, [CLI, 'agent', '--dev', '--http-port', '0', '--serf-lan-port', '0', '--bind', '127.0.96.4'], { timeout: 1500, encoding: 'utf8' });
  assert.doesNotMatch(`${dev.stdout}${dev.stderr}`, /refusing to start/);
  assert.match(`${dev.stdout}${dev.stderr}`, /agent started|listening/);
});

function writeJson(dir: string, obj: unknown): string {
  const f = join(dir, `cfg-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(f, JSON.stringify(obj));
  return f;
}

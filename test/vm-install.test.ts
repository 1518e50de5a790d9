// The VM install: scripts/nodemesh.service passes systemd-analyze verify and holds the settings that matter; scripts/install-vm.sh --root installs a package, config, CA, token and unit the installed agent really runs from; bad input exits 2 with nothing written.
//
// Everything runs as the current user under a temporary --root (no useradd, no systemctl, no chown
// unless root with a nodemesh user), on loopback addresses 127.0.13.x only. The package is really
// installed with `npm install -g` (from npm's cache when it has the locked versions: prefer-offline).

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { defaultConfig } from '../config/agent-config.js';
import { ROOT, runCli, tempDir } from './helpers/agent-process.js';

const INSTALLER = join(ROOT, 'scripts', 'install-vm.sh');
const UNIT = join(ROOT, 'scripts', 'nodemesh.service');
const JOIN = '127.0.13.1:8301'; // nothing listens there: retry_join keeps trying, which is fine
const BIND = '127.0.13.2';

const children: ChildProcess[] = [];
after(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });

/** systemd-analyze comes with Debian's `systemd` package. Absent, (a) skips loudly — except under CI, where that is a failure. */
function systemdAnalyzeAvailable(): boolean {
  if (spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).status === 0) return true;
  if (process.env.CI === 'true') throw new Error('systemd-analyze is missing: CI must install Debian\'s systemd package (apt-get install -y systemd)');
  process.stderr.write('\n*** SKIPPING systemd-analyze verify of scripts/nodemesh.service: systemd-analyze not found (apt-get install systemd) ***\n\n');
  return false;
}
const haveAnalyze = systemdAnalyzeAvailable();

function verify(unitPath: string): { code: number; out: string } {
  const r = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`.trim() };
}

/** [Section] → key → values, in order (a key may repeat; `Key=` with nothing is an empty string). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) { section = s[1]; out[section] ??= {}; continue; }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a Key=Value line: ${line}`);
    (out[section][line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}
const one = (unit: Record<string, Record<string, string[]>>, section: string, key: string): string => {
  const v = unit[section]?.[key];
  assert.ok(v && v.length === 1, `[${section}] ${key}= exactly once (found ${JSON.stringify(v)})`);
  return v[0];
};

interface Run { code: number; stdout: string; stderr: string; ms: number }
const show = (r: Run) => `exit ${r.code} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

function installer(args: string[]): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    const p = spawn('bash', [INSTALLER, ...args], {
      // prefer-offline: the locked versions come from npm's cache when it has them (after `npm ci` it does).
      env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => { stdout += c; });
    p.stderr.on('data', (c) => { stderr += c; });
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started }));
  });
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

/** KEY=VALUE lines, as systemd's EnvironmentFile= reads them (comments and blank lines skipped). */
function envFile(path: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

interface Installed { proc: ChildProcess; url: string; output(): string; exited: Promise<number | string> }

/** Runs the installed command line (argv from the unit's ExecStart=, env from its EnvironmentFile=) until its log says it runs. */
async function startInstalled(argv: string[], env: Record<string, string>): Promise<Installed> {
  const base: Record<string, string | undefined> = { ...process.env };
  delete base.NODEMESH_ACL_TOKEN;
  const proc = spawn(argv[0], argv.slice(1), { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (c) => { out += c; });
  proc.stderr!.on('data', (c) => { out += c; });
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the installed agent did not start within 20s:\n${out}`)), 20_000);
    const look = () => {
      const m = /"http":"127\.0\.0\.1:(\d+)".*"msg":"nodemesh agent running"/.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    proc.stdout!.on('data', look);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`the installed agent exited (${code}) before running:\n${out}`)); });
  });
  return { proc, url: `http://127.0.0.1:${port}`, output: () => out, exited };
}

test('(a) scripts/nodemesh.service passes systemd-analyze verify and holds what the agent needs', { skip: !haveAnalyze }, (t) => {
  const text = readFileSync(UNIT, 'utf8');
  assert.match(text.split('\n')[0], /^# \S/, 'a one-line comment first');
  const unit = parseUnit(text);

  // As shipped: the only complaint allowed is that /usr/local/bin/nodemesh is not installed on this machine.
  const raw = verify(UNIT);
  t.diagnostic(`systemd-analyze verify scripts/nodemesh.service → exit ${raw.code}: ${raw.out || '(no output)'}`);
  for (const line of raw.out.split('\n').filter(Boolean)) assert.match(line, /Command \/usr\/local\/bin\/nodemesh is not executable/, raw.out);
  // With a command that exists, verify has nothing to say at all (it exits 0 even on unknown keys, so the output is what counts).
  const dir = tempDir('nodemesh-unit-');
  writeFileSync(join(dir, 'nodemesh.service'), text.replace(/^ExecStart=\/usr\/local\/bin\/nodemesh /m, 'ExecStart=/bin/true '));
  const clean = verify(join(dir, 'nodemesh.service'));
  t.diagnostic(`systemd-analyze verify (ExecStart=/bin/true …) → exit ${clean.code}: ${clean.out || '(no output)'}`);
  assert.equal(clean.code, 0, clean.out);
  assert.equal(clean.out, '', 'no warnings');

  assert.equal(one(unit, 'Service', 'Type'), 'simple');
  assert.equal(one(unit, 'Service', 'User'), 'nodemesh');
  assert.equal(one(unit, 'Service', 'Group'), 'nodemesh');
  assert.equal(one(unit, 'Service', 'ExecStart'), '/usr/local/bin/nodemesh agent --data-dir /var/lib/nodemesh --config-dir /etc/nodemesh.d');
  assert.equal(one(unit, 'Service', 'ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(one(unit, 'Service', 'KillSignal'), 'SIGTERM');
  const stopSec = Number(one(unit, 'Service', 'TimeoutStopSec'));
  assert.ok(stopSec >= 30 && stopSec > defaultConfig().drainTimeoutMs / 1000 + 10, `TimeoutStopSec=${stopSec} leaves room for drain_timeout (${defaultConfig().drainTimeoutMs / 1000} s) plus leave and flush`);
  assert.equal(one(unit, 'Service', 'Restart'), 'on-failure');
  assert.equal(one(unit, 'Service', 'RestartPreventExitStatus'), '2', 'a config error (exit 2) is not restarted in a loop');
  assert.equal(one(unit, 'Service', 'EnvironmentFile'), '-/etc/nodemesh/nodemesh.env');
  assert.equal(one(unit, 'Service', 'LimitNOFILE'), '65536');
  for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'],
    ['StateDirectory', 'nodemesh'], ['StateDirectoryMode', '0700'], ['CapabilityBoundingSet', ''], ['AmbientCapabilities', ''],
    ['SystemCallArchitectures', 'native'], ['ProtectKernelTunables', 'yes']] as const) {
    assert.equal(one(unit, 'Service', k), v, `${k}=${v}`);
  }
  assert.deepEqual(one(unit, 'Service', 'RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
  assert.equal(unit.Service.MemoryDenyWriteExecute, undefined, 'V8 needs W+X memory');
  assert.equal(one(unit, 'Unit', 'After'), 'network-online.target');
  assert.equal(one(unit, 'Unit', 'Wants'), 'network-online.target');
  assert.equal(one(unit, 'Install', 'WantedBy'), 'multi-user.target');
});

test('(b) install-vm.sh --root installs package, config, CA, token and unit; the installed agent runs from them; a re-run keeps what it is not given', async (t) => {
  const dir = tempDir('nodemesh-vm-');
  const root = join(dir, 'root');
  const caDir = join(dir, 'mesh-ca');
  const init = await runCli(['--format', 'json', 'ca', 'init', '--out', caDir]);
  assert.equal(init.code, 0, init.stderr);
  const trustDomain = (JSON.parse(init.stdout) as { trustDomain: string }).trustDomain;
  const keygen = await runCli(['keygen']);
  assert.equal(keygen.code, 0, keygen.stderr);
  const key = keygen.stdout.trim();
  const token = randomBytes(24).toString('base64');
  const tokenFile = join(dir, 'acl-token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const secretsNotIn = (r: Run) => {
    assert.ok(!`${r.stdout}${r.stderr}`.includes(key), 'the gossip key is never printed');
    assert.ok(!`${r.stdout}${r.stderr}`.includes(token), 'the token is never printed');
  };

  const first = await installer(['--root', root, '--package', ROOT, '--join', JOIN, '--encrypt', key, '--ca-dir', caDir,
    '--acl-token-file', tokenFile, '--node', 'vm-test', '--bind', BIND]);
  t.diagnostic(`install from the repository directory (stage, npm pack, npm install -g): ${first.ms} ms`);
  assert.equal(first.code, 0, show(first));
  secretsNotIn(first);
  assert.match(first.stdout, /not creating the nodemesh user, not running systemctl/);
  assert.doesNotMatch(first.stderr, /WARNING: no (gossip encryption key|mesh CA|ACL token)/, 'nothing missing');

  // Files, modes, contents.
  const etcD = join(root, 'etc', 'nodemesh.d');
  const etc = join(root, 'etc', 'nodemesh');
  const state = join(root, 'var', 'lib', 'nodemesh');
  const bin = join(root, 'usr', 'local', 'bin', 'nodemesh');
  const unitPath = join(root, 'etc', 'systemd', 'system', 'nodemesh.service');
  assert.equal(mode(etcD), '0750');
  assert.equal(mode(etc), '0750');
  assert.equal(mode(state), '0700');
  assert.equal(mode(join(etcD, '00-agent.json')), '0640', 'holds the gossip key: not world-readable');
  assert.equal(mode(join(etc, 'ca.pem')), '0644');
  assert.equal(mode(join(etc, 'ca-key.pem')), '0640');
  assert.equal(mode(join(etc, 'nodemesh.env')), '0640');
  assert.equal(mode(unitPath), '0644');
  assert.deepEqual(readdirSync(etcD), ['00-agent.json'], 'no temp files left behind');
  assert.deepEqual(JSON.parse(readFileSync(join(etcD, '00-agent.json'), 'utf8')), {
    node: 'vm-test', bind: BIND, retry_join: [JOIN], encrypt: key,
    ca_file: join(etc, 'ca.pem'), ca_key_file: join(etc, 'ca-key.pem'), data_dir: state,
  });
  assert.equal(readFileSync(join(etc, 'ca.pem'), 'utf8'), readFileSync(join(caDir, 'ca.pem'), 'utf8'));
  assert.equal(readFileSync(join(etc, 'ca-key.pem'), 'utf8'), readFileSync(join(caDir, 'ca-key.pem'), 'utf8'));
  assert.deepEqual(envFile(join(etc, 'nodemesh.env')), { NODEMESH_ACL_TOKEN: token });
  assert.ok(existsSync(join(root, 'usr', 'local', 'lib', 'node_modules', 'nodemesh', 'dist', 'cli', 'main.js')), 'a real copy, not a link to the clone');
  assert.ok(!existsSync(join(root, 'usr', 'local', 'lib', 'node_modules', 'nodemesh', 'node_modules', 'typescript')), 'no dev dependencies');

  // The installed unit points into the root, and (its command existing now) verifies cleanly as it is.
  const unit = parseUnit(readFileSync(unitPath, 'utf8'));
  const execStart = one(unit, 'Service', 'ExecStart');
  assert.equal(execStart, `${bin} agent --data-dir ${state} --config-dir ${etcD}`);
  assert.equal(one(unit, 'Service', 'EnvironmentFile'), `-${join(etc, 'nodemesh.env')}`);
  if (haveAnalyze) {
    const v = verify(unitPath);
    t.diagnostic(`systemd-analyze verify <root>/etc/systemd/system/nodemesh.service → exit ${v.code}: ${v.out || '(no output)'}`);
    assert.equal(v.code, 0, v.out);
    assert.equal(v.out, '');
  }

  // The unit's command line (ports picked free for the test) with the unit's environment file: the real installed agent.
  const agentStarted = Date.now();
  const agent = await startInstalled([...execStart.split(' '), '--http-port', '0', '--serf-lan-port', '0'], envFile(one(unit, 'Service', 'EnvironmentFile').slice(1)));
  const self = await (await fetch(`${agent.url}/v1/agent/self`, { headers: { 'X-Consul-Token': token } })).json() as { Config: { NodeName: string }; DebugConfig: { BindAddr: string; DataDir: string } };
  assert.equal(self.Config.NodeName, 'vm-test');
  assert.equal(self.DebugConfig.BindAddr, BIND);
  assert.equal(self.DebugConfig.DataDir, state);
  assert.match(agent.output(), new RegExp(`"gossip":"${BIND.replace(/\./g, '\\.')}:\\d+"`));
  assert.match(agent.output(), /"encrypted":true/);
  const roots = await (await fetch(`${agent.url}/v1/agent/connect/ca/roots`)).json() as { TrustDomain: string };
  assert.equal(roots.TrustDomain, trustDomain, 'the CA from --ca-dir');
  assert.deepEqual(JSON.parse(readFileSync(join(state, 'serf', 'local.keyring'), 'utf8')), [key]);
  const body = JSON.stringify({ Name: 'vm-app', Port: 8080 });
  assert.equal((await fetch(`${agent.url}/v1/agent/service/register`, { method: 'PUT', body })).status, 403, 'the token from the env file guards writes');
  assert.equal((await fetch(`${agent.url}/v1/agent/service/register`, { method: 'PUT', body, headers: { 'X-Consul-Token': token } })).status, 200);
  agent.proc.kill('SIGTERM');
  assert.equal(await agent.exited, 0, agent.output());
  t.diagnostic(`installed agent: start, checks, SIGTERM → exit 0: ${Date.now() - agentStarted} ms`);

  // Upgrade path: a tarball from --pack-only, installed over the same root with only a new join address.
  const packDir = join(dir, 'pack');
  const pack = await installer(['--pack-only', packDir]);
  assert.equal(pack.code, 0, show(pack));
  t.diagnostic(`--pack-only: ${pack.ms} ms`);
  const [tgz] = readdirSync(packDir);
  assert.match(tgz, /^nodemesh-.*\.tgz$/);
  const listing = spawnSync('tar', ['-tzf', join(packDir, tgz)], { encoding: 'utf8' }).stdout.split('\n');
  for (const f of ['package/package.json', 'package/bin/nodemesh.js', 'package/dist/cli/main.js', 'package/npm-shrinkwrap.json',
    'package/scripts/nodemesh.service', 'package/scripts/install-vm.sh']) assert.ok(listing.includes(f), `${tgz} holds ${f}`);
  assert.ok(!listing.some((f) => /^package\/(test|agent|catalog|node_modules)\//.test(f)), 'no sources, tests or node_modules');

  const keyFile = join(dir, 'gossip.key');
  writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
  const again = await installer(['--root', root, '--package', join(packDir, tgz), '--join', '127.0.13.1:8302', '--encrypt-file', keyFile]);
  t.diagnostic(`re-install from the --pack-only tarball: ${again.ms} ms`);
  assert.equal(again.code, 0, show(again));
  secretsNotIn(again);
  assert.doesNotMatch(again.stderr, /WARNING: no /, 'CA and token kept from the first install');
  assert.deepEqual(JSON.parse(readFileSync(join(etcD, '00-agent.json'), 'utf8')), {
    node: 'vm-test', bind: BIND, retry_join: ['127.0.13.1:8302'], encrypt: key,
    ca_file: join(etc, 'ca.pem'), ca_key_file: join(etc, 'ca-key.pem'), data_dir: state,
  });
  assert.deepEqual(envFile(join(etc, 'nodemesh.env')), { NODEMESH_ACL_TOKEN: token });
  assert.equal(mode(join(etcD, '00-agent.json')), '0640');
  const version = spawnSync(bin, ['version'], { encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /^nodemesh v/);

  // A bare install (no key, CA or token) works but says loudly what is missing.
  const bare = await installer(['--root', join(dir, 'bare'), '--package', join(packDir, tgz), '--node', 'vm-bare']);
  t.diagnostic(`bare install from the tarball: ${bare.ms} ms`);
  assert.equal(bare.code, 0, show(bare));
  assert.match(bare.stderr, /WARNING: no gossip encryption key/);
  assert.match(bare.stderr, /WARNING: no mesh CA/);
  assert.match(bare.stderr, /WARNING: no ACL token/);
  const bareConfig = JSON.parse(readFileSync(join(dir, 'bare', 'etc', 'nodemesh.d', '00-agent.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(bareConfig, { node: 'vm-bare', data_dir: join(dir, 'bare', 'var', 'lib', 'nodemesh') });
});

test('(c) bad input exits 2 with a message that says what to do, and writes nothing', async () => {
  const dir = tempDir('nodemesh-vm-bad-');
  const root = join(dir, 'root');
  const caDir = join(dir, 'mesh-ca');
  assert.equal((await runCli(['ca', 'init', '--out', caDir])).code, 0);
  const otherCa = join(dir, 'other-ca');
  assert.equal((await runCli(['ca', 'init', '--out', otherCa])).code, 0);
  const halfCa = join(dir, 'half-ca');
  mkdirSync(halfCa);
  copyFileSync(join(caDir, 'ca.pem'), join(halfCa, 'ca.pem'));
  const mixedCa = join(dir, 'mixed-ca');
  mkdirSync(mixedCa);
  copyFileSync(join(caDir, 'ca.pem'), join(mixedCa, 'ca.pem'));
  copyFileSync(join(otherCa, 'ca-key.pem'), join(mixedCa, 'ca-key.pem'));
  const shortToken = join(dir, 'short-token');
  writeFileSync(shortToken, 'abc\n');
  // A tarball like a plain `npm pack` of the repository: package.json and bin/, but no compiled dist/.
  mkdirSync(join(dir, 'nodist', 'package', 'bin'), { recursive: true });
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'nodist', 'package', 'package.json'));
  copyFileSync(join(ROOT, 'bin', 'nodemesh.js'), join(dir, 'nodist', 'package', 'bin', 'nodemesh.js'));
  assert.equal(spawnSync('tar', ['-czf', join(dir, 'nodist.tgz'), '-C', join(dir, 'nodist'), 'package']).status, 0);

  const tenBytes = randomBytes(10).toString('base64');
  const cases: [string[], RegExp[]][] = [
    [['--encrypt', 'not-base64'], [/is not base64/, /base64 of 16, 24 or 32 bytes/, /nodemesh keygen/]],
    [['--encrypt', tenBytes], [/is 10 bytes/, /nodemesh keygen/]],
    [['--encrypt', 'x', '--encrypt-file', join(dir, 'nope')], [/not both/, /Usage:/]],
    [['--encrypt-file', join(dir, 'nope')], [/cannot read it/, /nodemesh keygen > FILE/]],
    [['--ca-dir', '/nonexistent'], [/--ca-dir \/nonexistent: no such directory/, /nodemesh ca init --out DIR/]],
    [['--ca-dir', halfCa], [/no ca-key\.pem/, /copy both files/]],
    [['--ca-dir', mixedCa], [/does not belong to/]],
    [['--ca-dir', dir], [/found neither ca\.pem \+ ca-key\.pem/, /ca issue-intermediate --node/]],
    [['--acl-token-file', shortToken], [/at least 8/, /head -c 32 \/dev\/urandom \| base64/]],
    [['--join', '127.0.13.1:99999'], [/over 65535/]],
    [['--join', 'a b'], [/not host or host:port/]],
    [['--bind', 'vm.example'], [/not an IP address/]],
    [['--node', 'has space'], [/a node name is 1-128 characters/]],
    [['--package', join(dir, 'nodist.tgz')], [/no compiled dist\//, /--pack-only/]],
    [['--package', join(dir, 'missing.tgz')], [/no such file or directory/]],
    [['--frobnicate'], [/unknown option: --frobnicate/, /Usage: install-vm\.sh/]],
    [['--node'], [/--node needs a value/, /Usage:/]],
    [['stray'], [/unexpected argument: stray/, /Usage:/]],
  ];
  for (const [args, patterns] of cases) {
    const r = await installer(['--root', root, '--package', ROOT, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}:\n${show(r)}`);
    for (const p of patterns) assert.match(r.stderr, p, `${args.join(' ')}:\n${show(r)}`);
    assert.ok(!r.stderr.includes('not-base64') && !r.stderr.includes(tenBytes), 'a rejected key is not echoed either');
    assert.ok(!existsSync(root), `${args.join(' ')}: nothing written under --root`);
  }
  const help = await installer(['--help']);
  assert.equal(help.code, 0);
  for (const flag of ['--package', '--join', '--encrypt', '--encrypt-file', '--ca-dir', '--node', '--bind', '--acl-token-file', '--root', '--no-start', '--pack-only']) {
    assert.ok(help.stdout.includes(flag), `--help lists ${flag}`);
  }
});

// The `nodemesh` CLI end to end against a live agent: services register/deregister, read verbs as aligned tables and JSON, version, exit codes, ACL tokens.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, runCli, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';

const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// Pinned so a developer's own shell settings cannot leak into the child processes.
const NO_ENV = { NODEMESH_HTTP_TOKEN: '' };

type CliResult = Awaited<ReturnType<typeof runCli>>;

const show = (r: CliResult) => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

/** Runs the CLI against `agent` (global --http-addr appended after the verb). */
function cliAt(agent: TestAgent, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli([...args, '--http-addr', agent.url], { ...NO_ENV, ...env });
}

async function getJson(agent: TestAgent, path: string): Promise<unknown> {
  const res = await agent.api(path);
  assert.equal(res.status, 200, `GET ${path}`);
  return res.json();
}

function writeJson(dir: string, name: string, body: unknown): string {
  const f = join(dir, name);
  writeFileSync(f, typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  return f;
}

/** Start offsets of the columns of one table line: the line start and every non-blank after a run of 2+ spaces. */
function columnStarts(line: string): number[] {
  return [...line.matchAll(/(?:^|(?<= {2}))\S/g)].map((m) => m.index);
}

/**
 * Asserts `out` is an aligned table with exactly `headers`: every column starts at the same character offset on
 * every line, columns are separated by exactly two spaces at their widest cell, and no line has trailing blanks.
 * Returns the data rows as trimmed cells.
 */
function assertTable(out: string, headers: string[]): string[][] {
  assert.ok(out.endsWith('\n'), `table output ends with a newline: ${JSON.stringify(out)}`);
  const lines = out.slice(0, -1).split('\n');
  assert.ok(lines.length >= 2, `a header and at least one row:\n${out}`);
  assert.deepEqual(lines[0].split(/ {2,}/), headers, `header row:\n${out}`);
  const starts = columnStarts(lines[0]);
  assert.equal(starts.length, headers.length);
  for (const line of lines) {
    assert.equal(line, line.trimEnd(), `no trailing blanks: ${JSON.stringify(line)}`);
    // Trailing empty cells are trimmed away, so a line may have fewer columns, but never text past where they start.
    const got = columnStarts(line);
    const where = `every column starts at the same offset on this line:\n${out}\n(line ${JSON.stringify(line)})`;
    assert.deepEqual(got, starts.slice(0, got.length), where);
    if (got.length < starts.length) assert.ok(line.length <= starts[got.length] - 2, where);
  }
  // Columns are as narrow as their widest cell: the tightest gap before each column is exactly two spaces.
  for (let i = 1; i < starts.length; i++) {
    const gap = Math.min(...lines.map((l) => starts[i] - l.slice(0, starts[i]).trimEnd().length));
    assert.equal(gap, 2, `column ${headers[i]} is separated by two spaces from the widest cell before it:\n${out}`);
  }
  return lines.slice(1).map((l) => starts.map((s, i) => l.slice(s, starts[i + 1]).trim()));
}

describe('nodemesh services register / deregister', () => {
  let agent: TestAgent;
  let dir: string;
  before(async () => {
    agent = await startTestAgent();
    dir = tempDir('nodemesh-cli-');
  });
  after(async () => { await agent?.stop('test done'); });

  test('register from flags, visible in /v1/agent/services; deregister by ID', async () => {
    const r = await cliAt(agent, ['services', 'register', '--name', 'web', '--port', '8080', '--tag', 'v1', '--tag', 'v2', '--meta', 'team=a']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'Registered service: web\n');
    assert.equal(r.stderr, '');
    const services = await getJson(agent, '/v1/agent/services') as Record<string, { ID: string; Service: string; Port: number; Tags: string[]; Meta: Record<string, string> }>;
    assert.deepEqual(Object.keys(services), ['web']);
    assert.equal(services.web.Service, 'web');
    assert.equal(services.web.Port, 8080);
    assert.deepEqual(services.web.Tags, ['v1', 'v2']);
    assert.deepEqual(services.web.Meta, { team: 'a' });

    const d = await cliAt(agent, ['services', 'deregister', 'web']);
    assert.equal(d.code, 0, show(d));
    assert.equal(d.stdout, 'Deregistered service: web\n');
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });

  test('register from Consul definition files (bare and {"service": ...} wrapper, with TTL checks); deregister by file', async () => {
    const bare = writeJson(dir, 'db.json', { Name: 'db', Port: 5432, Meta: { role: 'primary' }, Check: { CheckID: 'db-ttl', TTL: '10s' } });
    const wrapped = writeJson(dir, 'api.json', { service: { Name: 'api', ID: 'api-1', Port: 9090, Tags: ['x'], Check: { Name: 'api ttl', TTL: '30s' } } });

    let r = await cliAt(agent, ['services', 'register', bare]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'Registered service: db\n');
    r = await runCli(['--format', 'json', 'services', 'register', wrapped, '--http-addr', agent.url], NO_ENV);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(JSON.parse(r.stdout), { registered: 'api-1' });

    const services = await getJson(agent, '/v1/agent/services') as Record<string, { Service: string; Port: number; Tags: string[]; Meta: Record<string, string> }>;
    assert.deepEqual(Object.keys(services).sort(), ['api-1', 'db']);
    assert.equal(services['api-1'].Service, 'api');
    assert.equal(services['api-1'].Port, 9090);
    assert.deepEqual(services['api-1'].Tags, ['x']);
    assert.equal(services.db.Port, 5432);
    assert.deepEqual(services.db.Meta, { role: 'primary' });

    const checks = await getJson(agent, '/v1/agent/checks') as Record<string, { ServiceID: string; Status: string; Name: string }>;
    assert.equal(checks['db-ttl']?.ServiceID, 'db', JSON.stringify(checks));
    assert.equal(checks['db-ttl'].Status, 'critical', 'a TTL check starts critical');
    assert.equal(checks['service:api-1']?.ServiceID, 'api-1', JSON.stringify(checks));
    assert.equal(checks['service:api-1'].Name, 'api ttl');

    r = await cliAt(agent, ['services', 'deregister', wrapped]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'Deregistered service: api-1\n');
    r = await cliAt(agent, ['services', 'deregister', bare, '--format', 'json']);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(JSON.parse(r.stdout), { deregistered: 'db' });
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
    assert.deepEqual(await getJson(agent, '/v1/agent/checks'), {});
  });

  test('NODEMESH_HTTP_ADDR is used when --http-addr is absent, and host:port without a scheme is accepted', async () => {
    let r = await runCli(['services', 'register', '--name', 'env-svc', '--port', '1'], { ...NO_ENV, NODEMESH_HTTP_ADDR: agent.url });
    assert.equal(r.code, 0, show(r));
    r = await runCli(['services', 'deregister', 'env-svc', '--http-addr', agent.url.replace('http://', '')], NO_ENV);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });
});

describe('nodemesh read verbs: aligned tables and --format json', () => {
  let agent: TestAgent;
  before(async () => {
    agent = await startTestAgent();
    const dir = tempDir('nodemesh-cli-');
    const defs = [
      ['services', 'register', '--name', 'web', '--port', '8080', '--tag', 'v1', '--tag', 'v2'],
      ['services', 'register', '--name', 'web', '--id', 'web-secondary-instance', '--port', '80', '--address', '10.0.0.12', '--tag', 'canary'],
      ['services', 'register', writeJson(dir, 'long.json', { Name: 'a-much-longer-service-name', Port: 12345, Tags: ['alpha', 'beta', 'gamma'] })],
      ['services', 'register', writeJson(dir, 'ttl.json', { service: { Name: 'web', ID: 'web-ttl', Port: 81, Check: { TTL: '60s' } } })],
    ];
    for (const r of await Promise.all(defs.map((args) => cliAt(agent, args)))) assert.equal(r.code, 0, show(r));
  });
  after(async () => { await agent?.stop('test done'); });

  test('catalog services', async () => {
    const r = await cliAt(agent, ['catalog', 'services']);
    assert.equal(r.code, 0, show(r));
    const rows = assertTable(r.stdout, ['NAME', 'TAGS']);
    const byName = new Map(rows.map((row) => [row[0], row[1]]));
    assert.equal(byName.get('a-much-longer-service-name'), 'alpha,beta,gamma');
    assert.deepEqual(byName.get('web')?.split(',').sort(), ['canary', 'v1', 'v2']);
  });

  test('catalog nodes', async () => {
    const r = await cliAt(agent, ['catalog', 'nodes']);
    assert.equal(r.code, 0, show(r));
    const rows = assertTable(r.stdout, ['NODE', 'ID', 'ADDRESS', 'DC']);
    const nodes = await getJson(agent, '/v1/catalog/nodes') as { Node: string; ID: string; Address: string; Datacenter: string }[];
    assert.deepEqual(rows, nodes.map((n) => [n.Node, n.ID.slice(0, 8), n.Address, n.Datacenter]));
    assert.deepEqual(rows[0], ['node-1', nodes[0].ID.slice(0, 8), '127.0.0.1', 'dc1']);
  });

  test('catalog service web', async () => {
    const r = await cliAt(agent, ['catalog', 'service', 'web']);
    assert.equal(r.code, 0, show(r));
    const rows = assertTable(r.stdout, ['NODE', 'ID', 'ADDRESS', 'PORT', 'TAGS']);
    assert.deepEqual(rows.map((row) => row.join('|')).sort(), [
      'node-1|web-secondary-instance|10.0.0.12|80|canary',
      'node-1|web-ttl|127.0.0.1|81|',
      'node-1|web|127.0.0.1|8080|v1,v2',
    ]);
  });

  test('health service web', async () => {
    const r = await cliAt(agent, ['health', 'service', 'web']);
    assert.equal(r.code, 0, show(r));
    const rows = assertTable(r.stdout, ['NODE', 'ID', 'ADDRESS', 'PORT', 'STATUS', 'CHECKS']);
    const byId = new Map(rows.map((row) => [row[1], row]));
    assert.deepEqual([...byId.keys()].sort(), ['web', 'web-secondary-instance', 'web-ttl']);
    assert.deepEqual(byId.get('web'), ['node-1', 'web', '127.0.0.1', '8080', 'passing', 'serfHealth=passing']);
    assert.deepEqual(byId.get('web-ttl'), ['node-1', 'web-ttl', '127.0.0.1', '81', 'critical', 'serfHealth=passing service:web-ttl=critical']);

    const passing = await cliAt(agent, ['health', 'service', 'web', '--passing']);
    assert.equal(passing.code, 0, show(passing));
    const ids = assertTable(passing.stdout, ['NODE', 'ID', 'ADDRESS', 'PORT', 'STATUS', 'CHECKS']).map((row) => row[1]).sort();
    assert.deepEqual(ids, ['web', 'web-secondary-instance']);
  });

  test('members', async () => {
    const r = await cliAt(agent, ['members']);
    assert.equal(r.code, 0, show(r));
    const rows = assertTable(r.stdout, ['NODE', 'ADDRESS', 'STATUS', 'TAGS']);
    const members = await getJson(agent, '/v1/agent/members') as { Name: string; Addr: string; Port: number; Tags: Record<string, string> }[];
    assert.deepEqual(rows, members.map((m) => [m.Name, `${m.Addr}:${m.Port}`, 'alive', Object.entries(m.Tags).sort().map(([k, v]) => `${k}=${v}`).join(',')]));
    assert.match(rows[0][3], /(^|,)dc=dc1(,|$)/);
    assert.match(rows[0][3], /(^|,)role=node(,|$)/);
  });

  test('empty results print a sentence, not an empty table', async () => {
    const [cat, health] = await Promise.all([cliAt(agent, ['catalog', 'service', 'nope']), cliAt(agent, ['health', 'service', 'nope'])]);
    assert.equal(cat.code, 0, show(cat));
    assert.equal(cat.stdout, 'No instances of service "nope".\n');
    assert.equal(health.code, 0, show(health));
    assert.equal(health.stdout, 'No instances of service "nope".\n');
  });

  const jsonCases: [string[], string][] = [
    [['catalog', 'services'], '/v1/catalog/services'],
    [['catalog', 'nodes'], '/v1/catalog/nodes'],
    [['catalog', 'service', 'web'], '/v1/catalog/service/web'],
    [['health', 'service', 'web'], '/v1/health/service/web'],
    [['members'], '/v1/agent/members'],
  ];
  for (const [verb, path] of jsonCases) {
    test(`\`${verb.join(' ')}\` with --format json before or after the verb prints the API's JSON (${path})`, async () => {
      const results = await Promise.all([cliAt(agent, ['--format', 'json', ...verb]), cliAt(agent, [...verb, '--format', 'json'])]);
      const api = await getJson(agent, path);
      for (const r of results) {
        assert.equal(r.code, 0, show(r));
        assert.equal(r.stderr, '');
        assert.deepEqual(JSON.parse(r.stdout) as unknown, api, show(r));
      }
    });
  }
});

describe('nodemesh version', () => {
  test('prints the package.json version as text and as JSON', async () => {
    const [text, jsonBefore, jsonAfter] = await Promise.all([
      runCli(['version'], NO_ENV),
      runCli(['--format', 'json', 'version'], NO_ENV),
      runCli(['version', '--format', 'json'], NO_ENV),
    ]);
    assert.equal(text.code, 0, show(text));
    assert.equal(text.stdout, `nodemesh v${PKG_VERSION}\n`);
    for (const r of [jsonBefore, jsonAfter]) {
      assert.equal(r.code, 0, show(r));
      assert.deepEqual(JSON.parse(r.stdout), { version: PKG_VERSION });
    }
  });
});

describe('nodemesh errors and exit codes', () => {
  let agent: TestAgent;
  before(async () => { agent = await startTestAgent(); });
  after(async () => { await agent?.stop('test done'); });

  const oneLine = (r: CliResult) => {
    assert.ok(r.stderr.endsWith('\n'), show(r));
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `exactly one line on stderr:\n${show(r)}`);
  };

  test('agent unreachable → exit 1, one line naming the address and the fix', async () => {
    // A port nothing listens on: bind a free one, then close it.
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));

    const runs = ['http://127.0.0.1:1', `http://127.0.0.1:${port}`].flatMap((addr) =>
      [['catalog', 'services'], ['services', 'register', '--name', 'web', '--port', '80']].map((args) => ({ addr, args })));
    const results = await Promise.all(runs.map(({ addr, args }) => runCli([...args, '--http-addr', addr], NO_ENV)));
    runs.forEach(({ addr }, i) => {
      const r = results[i];
      assert.equal(r.code, 1, show(r));
      assert.equal(r.stdout, '');
      oneLine(r);
      assert.ok(r.stderr.includes(addr), `stderr names ${addr}:\n${r.stderr}`);
      assert.match(r.stderr, /cannot reach the agent/);
      assert.match(r.stderr, /nodemesh agent --dev/);
      assert.match(r.stderr, /--http-addr/);
      assert.match(r.stderr, /NODEMESH_HTTP_ADDR/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
    // A refused connection names its cause.
    for (const r of results.slice(2)) assert.match(r.stderr, /\(ECONNREFUSED\)/);
  });

  test('an agent that accepts and never answers: exit 1 after --timeout, one line saying so', async () => {
    const held: import('node:net').Socket[] = [];
    const srv = createServer((s) => held.push(s));
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const addr = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    try {
      const t0 = Date.now();
      const r = await runCli(['catalog', 'services', '--http-addr', addr, '--timeout', '1s'], NO_ENV);
      assert.equal(r.code, 1, show(r));
      oneLine(r);
      assert.match(r.stderr, /did not answer within 1 s/);
      assert.ok(Date.now() - t0 < 8000, 'gave up, did not hang');
      const bad = await runCli(['catalog', 'services', '--http-addr', addr, '--timeout', 'soon'], NO_ENV);
      assert.equal(bad.code, 2, show(bad));
      assert.match(bad.stderr, /invalid --timeout "soon"/);
    } finally {
      for (const s of held) s.destroy();
      srv.close();
    }
  });

  test('bad flag values are usage errors → exit 2, nothing sent', async () => {
    const cases = [
      ['services', 'register', '--name', 'x', '--port', '99999'],
      ['services', 'register', '--name', 'x', '--port', 'eighty'],
      ['services', 'register', '--name', 'x', '--meta', 'novalue'],
      ['services', 'register', '--name', 'x', '--meta', '=v'],
    ];
    const results = await Promise.all(cases.map((args) => cliAt(agent, args)));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i].join(' ')}\n${show(r)}`);
      oneLine(r);
      assert.match(r.stderr, /^nodemesh: --(port|meta) wants /);
    });
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });

  test('missing --name and file → exit 2', async () => {
    const r = await cliAt(agent, ['services', 'register', '--port', '80']);
    assert.equal(r.code, 2, show(r));
    oneLine(r);
    assert.match(r.stderr, /give a definition file or --name/);
  });

  test('unknown command, unknown option, missing argument, bad --format, bad --http-addr → exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['catalog', 'frobnicate'], /unknown command 'frobnicate'/],
      [['services', 'register', '--name', 'x', '--bogus'], /unknown option '--bogus'/],
      [['catalog', 'service'], /missing required argument 'name'/],
      [['--format', 'yaml', 'catalog', 'services'], /argument 'yaml' is invalid/],
    ];
    const results = await Promise.all(cases.map(([args]) => cliAt(agent, args)));
    results.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i][0].join(' ')}\n${show(r)}`);
      assert.match(r.stderr, cases[i][1]);
      assert.equal(r.stdout, '');
    });
    const bad = await runCli(['members', '--http-addr', 'ftp://127.0.0.1:8500'], NO_ENV);
    assert.equal(bad.code, 2, show(bad));
    oneLine(bad);
    assert.match(bad.stderr, /invalid --http-addr "ftp:\/\/127\.0\.0\.1:8500"/);
  });

  test('--help exits 0', async () => {
    const r = await runCli(['--help'], NO_ENV);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Usage: nodemesh/);
  });

  test('API rejection (unknown field in the definition file) → exit 1 with the agent\'s message', async () => {
    const dir = tempDir('nodemesh-cli-');
    const f = writeJson(dir, 'bogus.json', { Name: 'a', Bogus: 1 });
    const r = await cliAt(agent, ['services', 'register', f]);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.stdout, '');
    oneLine(r);
    assert.ok(r.stderr.includes('Request decode failed: json: unknown field "Bogus"'), show(r));
    assert.match(r.stderr, /400/);
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });

  test('unreadable or malformed definition files → exit 1 naming the file', async () => {
    const dir = tempDir('nodemesh-cli-');
    const cases: [string, RegExp][] = [
      [join(dir, 'missing.json'), /cannot read .*missing\.json: ENOENT/],
      [writeJson(dir, 'broken.json', '{"Name": '), /broken\.json is not valid JSON/],
      [writeJson(dir, 'array.json', [{ Name: 'a' }]), /array\.json must hold one service definition object/],
    ];
    const results = await Promise.all(cases.map(([file]) => cliAt(agent, ['services', 'register', file])));
    results.forEach((r, i) => {
      assert.equal(r.code, 1, show(r));
      oneLine(r);
      assert.match(r.stderr, cases[i][1]);
    });
  });
});

describe('nodemesh against an agent with an ACL token', () => {
  const TOKEN = 'secret-token-123';
  let agent: TestAgent;
  before(async () => { agent = await startTestAgent({ aclToken: TOKEN }); });
  after(async () => { await agent?.stop('test done'); });

  test('writes without a token → exit 1, stderr names 403 and --token', async () => {
    for (const args of [['services', 'register', '--name', 'web', '--port', '80'], ['services', 'deregister', 'web']]) {
      const r = await cliAt(agent, args);
      assert.equal(r.code, 1, show(r));
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, show(r));
      assert.match(r.stderr, /403/);
      assert.match(r.stderr, /this needs a token: pass --token/);
      assert.match(r.stderr, /NODEMESH_HTTP_TOKEN/);
    }
    const wrong = await cliAt(agent, ['services', 'register', '--name', 'web', '--port', '80', '--token', 'wrong-token-456']);
    assert.equal(wrong.code, 1, show(wrong));
    assert.match(wrong.stderr, /403/);
    assert.match(wrong.stderr, /the token was rejected/, 'a wrong token is told apart from a missing one');
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });

  test('--token or NODEMESH_HTTP_TOKEN authorizes writes; reads need none', async () => {
    let r = await cliAt(agent, ['services', 'register', '--name', 'web', '--port', '80', '--token', TOKEN]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'Registered service: web\n');
    r = await cliAt(agent, ['--token', TOKEN, 'services', 'register', '--name', 'db', '--port', '5432']);
    assert.equal(r.code, 0, show(r));
    r = await cliAt(agent, ['services', 'register', '--name', 'cache', '--port', '6379'], { NODEMESH_HTTP_TOKEN: TOKEN });
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(Object.keys(await getJson(agent, '/v1/agent/services') as object).sort(), ['cache', 'db', 'web']);

    r = await cliAt(agent, ['catalog', 'services']);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(assertTable(r.stdout, ['NAME', 'TAGS']).map((row) => row[0]).sort(), ['cache', 'db', 'web']);

    r = await cliAt(agent, ['services', 'deregister', 'web'], { NODEMESH_HTTP_TOKEN: TOKEN });
    assert.equal(r.code, 0, show(r));
    r = await cliAt(agent, ['services', 'deregister', 'db', '--token', TOKEN]);
    assert.equal(r.code, 0, show(r));
    r = await cliAt(agent, ['services', 'deregister', 'cache', '--token', TOKEN]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(await getJson(agent, '/v1/agent/services'), {});
  });
});

describe('Consul\'s habits on the command line', () => {
  test('single-dash long flags, as Consul\'s CLI takes them, work for the flags nodemesh knows', async () => {
    const r = await runCli(['catalog', 'services', '-http-addr', 'http://127.0.0.1:1', '-timeout=2s'], NO_ENV);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /cannot reach the agent at http:\/\/127\.0\.0\.1:1/, 'the single-dash flag took effect');
    const unknown = await runCli(['catalog', 'services', '-bogus'], NO_ENV);
    assert.equal(unknown.code, 2, show(unknown));
    assert.match(unknown.stderr, /unknown option '-bogus'/);
  });
});

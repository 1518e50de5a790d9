// Malformed API input gets Consul's 4xx (or 5xx where Consul answers so) with a clear text, and stored state stays as it was.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';

let agent: TestAgent;
before(async () => {
  agent = await startTestAgent();
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'keep', Port: 1234, Tags: ['orig'], Check: { TTL: '30s', Status: 'passing' } }));
  assert.equal(r.status, 200);
});
after(async () => { await agent.stop(); });

/** Everything the agent holds, for before/after comparison. */
async function state(): Promise<string> {
  const [services, checks, catalog] = await Promise.all(['/v1/agent/services', '/v1/agent/checks', '/v1/catalog/service/keep'].map(async (p) => (await agent.api(p)).text()));
  return JSON.stringify({ services, checks, catalog });
}

const cases: { name: string; path: string; body: unknown; status: number; text: RegExp | string }[] = [
  { name: 'non-JSON body', path: '/v1/agent/service/register', body: 'not json', status: 400, text: /^Request decode failed: invalid character/ },
  { name: 'empty body', path: '/v1/agent/service/register', body: '', status: 400, text: 'Request decode failed: EOF' },
  { name: 'JSON array body', path: '/v1/agent/service/register', body: '[1]', status: 400, text: /^Request decode failed: json: cannot unmarshal array/ },
  { name: 'unknown field', path: '/v1/agent/service/register', body: { Name: 'keep', Bogus: 1 }, status: 400, text: 'Request decode failed: json: unknown field "Bogus"' },
  { name: 'unknown nested field', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { TTL: '1s', Nope: true } }, status: 400, text: 'Request decode failed: json: unknown field "Nope"' },
  { name: 'missing name', path: '/v1/agent/service/register', body: { Port: 1 }, status: 400, text: 'Missing service name' },
  { name: 'Port as string', path: '/v1/agent/service/register', body: { Name: 'keep', Port: 'abc' }, status: 400, text: 'Request decode failed: json: cannot unmarshal string into Go struct field .Port of type int' },
  { name: 'Port fractional', path: '/v1/agent/service/register', body: { Name: 'keep', Port: 1.5 }, status: 400, text: /cannot unmarshal number 1.5/ },
  { name: 'Port out of range', path: '/v1/agent/service/register', body: { Name: 'keep', Port: 70000 }, status: 400, text: /Invalid service port 70000/ },
  { name: 'Tags not an array', path: '/v1/agent/service/register', body: { Name: 'keep', Tags: 'a' }, status: 400, text: /cannot unmarshal string into Go struct field .Tags of type \[\]string/ },
  { name: 'invalid duration', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { TTL: 'abc' } }, status: 400, text: 'Request decode failed: time: invalid duration "abc"' },
  { name: 'duration without unit', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { TTL: '10' } }, status: 400, text: 'Request decode failed: time: missing unit in duration "10"' },
  { name: 'meta key blank', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: { '': 'v' } }, status: 400, text: "Invalid Service Meta: Couldn't load metadata pair ('', 'v'): Key cannot be blank" },
  { name: 'meta key reserved', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: { 'consul-x': 'v' } }, status: 400, text: /Key prefix 'consul-' is reserved for internal use/ },
  { name: 'meta key invalid chars', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: { 'a.b': 'v' } }, status: 400, text: /Key contains invalid characters/ },
  { name: 'meta value too long', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: { a: 'x'.repeat(513) } }, status: 400, text: /Value is too long/ },
  { name: 'meta value not a string', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: { a: 1 } }, status: 400, text: /cannot unmarshal number into Go struct field .Meta of type string/ },
  { name: 'too many meta pairs', path: '/v1/agent/service/register', body: { Name: 'keep', Meta: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, status: 400, text: /cannot contain more than 64/ },
  { name: 'weights passing 0', path: '/v1/agent/service/register', body: { Name: 'keep', Weights: { Passing: 0, Warning: 1 } }, status: 400, text: 'Invalid Weights: Passing must be greater than 0' },
  { name: 'check with only Interval', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { Interval: '10s' } }, status: 400, text: 'Invalid check: TTL must be > 0 for TTL checks' },
  { name: 'HTTP check without Interval', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { HTTP: 'http://127.0.0.1:1/' } }, status: 400, text: 'Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks' },
  { name: 'Interval and TTL', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { TTL: '1s', Interval: '1s', TCP: '127.0.0.1:1' } }, status: 400, text: /Interval and TTL cannot both be specified/ },
  { name: 'bad check status', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { TTL: '1s', Status: 'great' } }, status: 400, text: /Status must be one of/ },
  { name: 'script check', path: '/v1/agent/service/register', body: { Name: 'keep', Check: { Args: ['/bin/true'], Interval: '1s' } }, status: 400, text: /Scripts are disabled/ },
  { name: 'connect-proxy without destination', path: '/v1/agent/service/register', body: { Name: 'p', Kind: 'connect-proxy', Port: 1 }, status: 400, text: '1 error occurred:\n\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\n' },
  { name: 'connect-proxy port 0', path: '/v1/agent/service/register', body: { Name: 'p', Kind: 'connect-proxy', Proxy: { DestinationServiceName: 'x' } }, status: 400, text: /\* Port must be set for a Connect proxy/ },
  { name: 'upstream without port and name', path: '/v1/agent/service/register', body: { Name: 'p', Kind: 'connect-proxy', Port: 1, Proxy: { DestinationServiceName: 'x', Upstreams: [{}] } }, status: 400, text: /2 errors occurred:\n\t\* upstream destination name cannot be empty\n\t\* upstream local bind port cannot be zero/ },
  { name: 'connect-proxy and native', path: '/v1/agent/service/register', body: { Name: 'p', Kind: 'connect-proxy', Port: 1, Proxy: { DestinationServiceName: 'x' }, Connect: { Native: true } }, status: 400, text: /A Proxy cannot also be Connect Native/ },
  { name: 'nested sidecar', path: '/v1/agent/service/register', body: { Name: 'keep', Connect: { SidecarService: { Connect: { SidecarService: {} } } } }, status: 400, text: /unknown field "SidecarService"/ },
  { name: 'bad replace-existing-checks', path: '/v1/agent/service/register?replace-existing-checks=maybe', body: { Name: 'keep' }, status: 400, text: /replace-existing-checks/ },
  { name: 'check update bad status', path: '/v1/agent/check/update/service:keep', body: { Status: 'bogus' }, status: 400, text: "Invalid check status: 'bogus'" },
  { name: 'check update unknown field', path: '/v1/agent/check/update/service:keep', body: { Status: 'passing', Extra: 1 }, status: 400, text: /unknown field "Extra"/ },
  { name: 'check update non-TTL/unknown', path: '/v1/agent/check/pass/nope', body: undefined, status: 500, text: 'CheckID "nope" does not have associated TTL' },
  { name: 'check register without name', path: '/v1/agent/check/register', body: { TTL: '1s' }, status: 400, text: 'Missing check name' },
  { name: 'check register bad TCP', path: '/v1/agent/check/register', body: { Name: 'c', TCP: 'nohostport', Interval: '1s' }, status: 400, text: /TCP must be host:port/ },
  { name: 'check register bad HTTP URL', path: '/v1/agent/check/register', body: { Name: 'c', HTTP: 'ftp://x', Interval: '1s' }, status: 400, text: /HTTP must be an http/ },
];

for (const c of cases) {
  test(`bad input: ${c.name} → ${c.status}, state unchanged`, async () => {
    const before = await state();
    const init = put(c.body);
    const r = await agent.api(c.path, init);
    const text = await r.text();
    assert.equal(r.status, c.status, text);
    if (typeof c.text === 'string') assert.equal(text, c.text);
    else assert.match(text, c.text);
    assert.equal(await state(), before);
  });
}

test('bad input: body over 1 MiB → 413, state unchanged', async () => {
  const before = await state();
  const r = await agent.api('/v1/agent/service/register', put({ Name: 'big', Meta: { a: 'x'.repeat(2 * 1024 * 1024) } }));
  assert.equal(r.status, 413);
  assert.match(await r.text(), /too large/);
  assert.equal(await state(), before);
});

test('bad input: blocking query parameters', async () => {
  let r = await agent.api('/v1/catalog/services?index=abc');
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'Invalid index');
  r = await agent.api('/v1/catalog/services?index=1&wait=soon');
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'Invalid wait time');
  r = await agent.api('/v1/health/service/');
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'Missing service name');
  r = await agent.api('/v1/agent/service/%zz');
  assert.equal(r.status, 400);
});

test('the agent keeps serving after every bad request', async () => {
  const r = await agent.api('/v1/agent/services');
  assert.equal(r.status, 200);
  const body = await r.json() as Record<string, { Tags: string[] }>;
  assert.deepEqual(Object.keys(body), ['keep']);
  assert.deepEqual(body.keep.Tags, ['orig']);
});

test('bad input: an unparsable request target gets a 400 and the agent keeps serving', async () => {
  const { connect } = await import('node:net');
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: agent.http.port }, () => s.write('GET http://[/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    let data = '';
    s.on('data', (c) => { data += c; });
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
  assert.match(answer, /^HTTP\/1\.1 400/);
  assert.equal((await agent.api('/v1/agent/services')).status, 200);
});

test('bad input: wrong method on a literal path is 405, not a lookup of a service named "register"', async () => {
  const r = await agent.api('/v1/agent/service/register');
  assert.equal(r.status, 405);
  assert.equal(await r.text(), 'method GET not allowed');
});

test('bad input: ?wait without a unit is 400; a malformed ?filter is a 400 naming the problem, never ignored', async () => {
  let r = await agent.api('/v1/catalog/services?index=1&wait=10');
  assert.equal(r.status, 400);
  assert.equal(await r.text(), 'Invalid wait time');
  for (const [filter, why] of [['x', /end of expression/], ['Service ==', /end of expression/], ['(Service == a', /missing \)/], ['Service ~ a', /unknown operator/], ['Service = a', /unexpected/],
    ['Service matches "(["', /bad regular expression/], ['"a" in', /end of expression/], ['Port > 1', /unknown operator/], ['(('.repeat(40) + 'a == b' + '))'.repeat(40), /nested too deeply/]] as const) {
    for (const path of ['/v1/catalog/services', '/v1/health/service/keep', '/v1/agent/services']) {
      r = await agent.api(`${path}?filter=${encodeURIComponent(filter)}`);
      assert.equal(r.status, 400, `${path} ${filter}`);
      assert.equal(r.headers.get('x-nodemesh-error'), 'API_FILTER_INVALID');
      assert.match(await r.text(), why, `${path} ${filter}`);
    }
  }
});

// No user regex runs in super-linear time: RE2 semantics for PathRegex / header / query Regex, refusal of what RE2 refuses, unchanged anchoring.
// Agents: A (caller `web`) 127.0.171.1, B (`api`, protocol http) 127.0.171.2; api's app 127.0.171.11, web 127.0.171.21.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { decodeConfigEntry } from '../model/config-entry.js';
import { httpMatchErrors, httpMatcher, type HttpMatchSpec, type RequestFacts } from '../model/http-match.js';
import { admitIntention } from '../model/intention-record.js';
import { compileLinearRegex, RegexSyntaxError } from '../lib/linear-regex.js';
import { put, sharedCa, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const facts = (path: string, headers: Record<string, string> = {}, query = ''): RequestFacts => ({ method: 'GET', path, query: new URLSearchParams(query), headers });
const matches = (spec: HttpMatchSpec, r: RequestFacts) => httpMatcher(spec)(r);

/** Patterns RE2 refuses, with what a reader should learn from the message. */
const REFUSED: [string, string][] = [
  ['(?=a)b', 'lookahead'],
  ['(?!a)b', 'negative lookahead'],
  ['(?<=a)b', 'lookbehind'],
  ['(a)\\1', 'backreference'],
  ['(?<n>a)\\k<n>', 'named backreference'],
  ['a++', 'possessive quantifier'],
  ['(', 'invalid syntax'],
];

describe('matching semantics (unit)', () => {
  test('whole-string match, as before: PathRegex, header Regex and QueryParam Regex are anchored at both ends', () => {
    assert.equal(matches({ PathRegex: '/a/.*' }, facts('/a/b')), true);
    assert.equal(matches({ PathRegex: '/a/.*' }, facts('/x/a/b')), false, 'not a search');
    assert.equal(matches({ PathRegex: '/a' }, facts('/a/b')), false, 'no implicit prefix match');
    assert.equal(matches({ PathRegex: '/a|/b' }, facts('/b')), true, 'alternation is wrapped as a whole');
    assert.equal(matches({ PathRegex: '/a|/b' }, facts('/bb')), false);
    assert.equal(matches({ PathRegex: '^/api/.*$' }, facts('/api/v1')), true, 'explicit anchors still work');
    assert.equal(matches({ PathRegex: '/api/.*' }, facts('/api/v1\n')), false, '$ does not match before a trailing newline');
    assert.equal(matches({ Header: [{ Name: 'x', Regex: 'a.*' }] }, facts('/', { x: 'abc' })), true);
    assert.equal(matches({ Header: [{ Name: 'x', Regex: 'a.*' }] }, facts('/', { x: 'ba' })), false);
    assert.equal(matches({ Header: [{ Name: 'x', Regex: 'a+', Invert: true }] }, facts('/', { x: 'b' })), true);
    assert.equal(matches({ QueryParam: [{ Name: 'q', Regex: '[0-9]+' }] }, facts('/', {}, 'q=123')), true);
    assert.equal(matches({ QueryParam: [{ Name: 'q', Regex: '[0-9]+' }] }, facts('/', {}, 'q=12a')), false);
  });

  test('case-sensitive unless the pattern says (?i), as before', () => {
    assert.equal(matches({ PathRegex: '/API/.*' }, facts('/api/x')), false);
    assert.equal(matches({ PathRegex: '(?i)/API/.*' }, facts('/api/x')), true);
    assert.equal(matches({ Header: [{ Name: 'X-Env', Regex: 'prod' }] }, facts('/', { 'x-env': 'PROD' })), false);
    assert.equal(matches({ Header: [{ Name: 'constructor', Regex: '.*' }] }, facts('/')), false, "a header not sent is absent, whatever its name (not Object's own)");
  });

  test('/(a+)+ is valid RE2 and matches in linear time; the matcher is compiled once per pattern', () => {
    assert.deepEqual(httpMatchErrors({ PathRegex: '/(a+)+' }, 'at'), []);
    const m = compileLinearRegex('/(a+)+');
    assert.equal(compileLinearRegex('/(a+)+'), m, 'cached');
    const t = performance.now();
    assert.equal(m('/' + 'a'.repeat(5000) + '!'), false);
    assert.equal(m('/' + 'a'.repeat(5000)), true);
    console.log(`# /(a+)+ against 5001 characters: ${(performance.now() - t).toFixed(1)} ms`);
    assert.ok(performance.now() - t < 1000);
  });

  test('what RE2 refuses is refused with the field named and RE2 named; the error carries a stable code', () => {
    for (const [re, what] of REFUSED) {
      assert.throws(() => compileLinearRegex(re), (e: unknown) => e instanceof RegexSyntaxError && e.code === 'REGEX_NOT_RE2', what);
      const errs = httpMatchErrors({ PathRegex: re, Header: [{ Name: 'x', Regex: re }], QueryParam: [{ Name: 'q', Regex: re }] }, 'Route[0]');
      assert.deepEqual(errs.map((e) => e.split(':')[0]), ['Route[0] PathRegex', 'Route[0] Header[0] Regex', 'Route[0] QueryParam[0] Regex'], `${what}: ${errs.join(' | ')}`);
      for (const e of errs) assert.match(e, /invalid regular expression: .*RE2 syntax is required/);
    }
  });

  test('replicated records go through the same validators: an intention or a router with a lookahead is refused', () => {
    const id = randomUUID();
    const now = new Date().toISOString();
    const got = admitIntention({ ID: id, Description: '', SourceNS: 'default', SourceName: 'web', DestinationNS: 'default', DestinationName: 'api', SourceType: 'consul', Action: '', Permissions: [{ Action: 'allow', HTTP: { PathRegex: '/(?=admin)' } }], DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 9, CreatedAt: now, UpdatedAt: now, Hash: 'x', CreateIndex: 1, ModifyIndex: 1 }, id);
    assert.equal(typeof got, 'string');
    assert.match(got as string, /Permissions\[0\]\.HTTP PathRegex: invalid regular expression: .*RE2 syntax is required/);
    const http = { Kind: 'service-defaults', Name: 'web', Protocol: 'http' };
    assert.throws(() => decodeConfigEntry({ Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { Header: [{ Name: 'x', Regex: '(a)\\1' }] } } }] }, () => http as never),
      /Route\[0\] Header\[0\] Regex: invalid regular expression: .*RE2 syntax is required/);
  });
});

describe('through the API and the mesh', () => {
  let a: TestAgent;
  let b: TestAgent;
  let app: Server;
  let upstream = 0;

  function call(path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const r = request({ host: '127.0.0.1', port: upstream, method: 'GET', path }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
      r.on('error', reject);
      r.end();
    });
  }

  before(async () => {
    const ca = { ...await sharedCa(), defaultIntentionPolicy: 'deny' as const };
    b = await startTestAgent({ node: 'ltr-b', bind: '127.0.171.2', ...ca });
    a = await startTestAgent({ node: 'ltr-a', bind: '127.0.171.1', join: [`127.0.171.2:${b.gossip.port}`], ...ca });
    app = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200).end('ok')); });
    await new Promise<void>((r) => app.listen(0, '127.0.171.11', r));
    await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.171.11', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
    assert.equal((await a.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }))).status, 200);
    await waitFor(async () => assert.equal((await b.api('/v1/config/service-defaults/api')).status, 200), 15_000);
    upstream = await freePort('127.0.0.1');
    await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.171.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }));
  });

  after(async () => {
    await a?.stop().catch(() => undefined);
    await b?.stop().catch(() => undefined);
    app?.close();
  });

  test('PathRegex "/(a+)+" is accepted (RE2 does); a hostile path is answered at once and the agent stays responsive', async () => {
    const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathRegex: '/(a+)+' } }] }) });
    assert.equal(r.status, 200, await r.text());
    await waitFor(async () => assert.equal(await call('/aaa'), 200), 15_000);
    const hostile = '/' + 'a'.repeat(50) + '!';
    const t = performance.now();
    const [status, ready] = await Promise.all([call(hostile), b.api('/v1/agent/self').then((x) => x.status)]);
    const ms = performance.now() - t;
    console.log(`# hostile path ${hostile.length} chars through the mesh + /v1/agent/self on the deciding agent: ${ms.toFixed(1)} ms`);
    assert.equal(status, 403, 'no permission matches the path ending in "!": the default deny answers');
    assert.equal(ready, 200);
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.equal(await call('/' + 'a'.repeat(50)), 200, 'the matching path is allowed');
  });

  test('lookahead / backreference / possessive patterns are refused with 400 naming the field and RE2', async () => {
    for (const [re, what] of REFUSED) {
      for (const http of [{ PathRegex: re }, { Header: [{ Name: 'x', Regex: re }] }]) {
        const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: http }] }) });
        const text = await r.text();
        assert.equal(r.status, 400, `${what} ${JSON.stringify(http)} → ${r.status} ${text}`);
        assert.match(text, /Permissions\[0\]\.HTTP (PathRegex|Header\[0\] Regex): invalid regular expression: .*RE2 syntax is required/);
      }
      const r = await a.api('/v1/config', put({ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { QueryParam: [{ Name: 'q', Regex: re }] } } }] }));
      const text = await r.text();
      assert.equal(r.status, 400, `${what} router → ${r.status} ${text}`);
      assert.match(text, /Route\[0\] QueryParam\[0\] Regex: invalid regular expression: .*RE2 syntax is required/);
    }
  });
});

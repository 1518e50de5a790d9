// Consul's filter language over JSON: each operator, precedence, selectors through maps and lists, and what is refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileBexpr } from '../model/bexpr.js';

const svc = { ID: 'web-1', Service: 'web', Port: 8080, Tags: ['v2', 'canary'], Meta: { version: '2', team: 'shop' }, Connect: { Native: false }, Checks: [{ Status: 'passing' }, { Status: 'warning' }] };
const yes = (f: string) => assert.equal(compileBexpr(f)(svc), true, f);
const no = (f: string) => assert.equal(compileBexpr(f)(svc), false, f);

test('==, != on strings, numbers and booleans; quoted and bare values', () => {
  yes('Service == web');
  yes('Service == "web"');
  yes('Service == `web`');
  yes('Port == 8080');
  yes('Connect.Native == false');
  no('Service != web');
  yes('Meta.version == 2');
  no('Meta.missing == 2');
  yes('Meta.missing != 2');
});

test('in, not in, contains, not contains over lists, map keys and strings', () => {
  yes('"canary" in Tags');
  yes('v2 in Tags');
  no('"prod" in Tags');
  yes('"prod" not in Tags');
  yes('Tags contains canary');
  yes('Tags not contains prod');
  yes('version in Meta');
  yes('Service contains "we"');
  yes('passing in Checks.Status');
});

test('is empty, is not empty, matches (RE2, found anywhere), not matches', () => {
  yes('Meta.missing is empty');
  yes('Tags is not empty');
  no('Tags is empty');
  yes('Service matches "^w.b$"');
  yes('ID matches "b-[0-9]"');
  yes('Service not matches "^db"');
});

test('not binds tighter than and, and tighter than or; parentheses group', () => {
  yes('Service == db or Service == web and Port == 8080');
  no('(Service == db or Service == web) and Port == 1');
  yes('not Service == db and Port == 8080');
  no('not (Service == web and Port == 8080)');
  yes('NOT Service == db AND Port == 8080');
});

test('refused: empty, unknown operators, dangling parts, bad regexes, deep nesting, very long filters', () => {
  for (const bad of ['', 'Service', 'Service ==', '== web', 'Service <> web', '(Service == web', 'Service == web)', 'Service matches "(["', '"a" in', 'Tags is', 'Tags is full',
    `${'('.repeat(40)}Service == web${')'.repeat(40)}`, `Service == ${'x'.repeat(5000)}`, 'Service == "open']) {
    assert.throws(() => compileBexpr(bad), (e: Error & { code?: string }) => e.code === 'API_FILTER_INVALID', JSON.stringify(bad.slice(0, 40)));
  }
});

// The one normalized request path: the encodings an attacker uses to slip past a path rule decide as the application reads them, or are refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyUnderscoreAction, headerFieldError, normalizeRequestTarget, targetOf } from '../model/request-path.js';

const norm = (t: string, o = {}) => {
  const n = normalizeRequestTarget(t, o);
  return 'error' in n ? `ERROR ${n.error}` : targetOf(n);
};

test('encodings of /admin normalize to /admin', () => {
  for (const t of ['/admin', '/%61dmin', '/%61%64%6D%69%6E', '//admin', '///admin//', '/x/../admin', '/x/%2e%2e/admin', '/./admin', '/a/b/../../admin', '/../admin', '/%2E/admin']) {
    assert.equal(norm(t).replace(/\/$/, ''), '/admin', t);
  }
});

test('escaped slashes, backslashes, bad escapes and raw non-ASCII are refused', () => {
  for (const t of ['/\\admin', '/x/..%2fadmin', '/x%2F..%2Fadmin', '/%5cadmin', '/%zzadmin', '/%4', '/adm\u00efn', '/a b', 'admin', '/a#frag']) {
    assert.match(norm(t), /^ERROR /, t);
  }
  assert.equal(norm('/x/..%2fadmin', { escapedSlashes: 'keep' }), '/x/..%2Fadmin', 'opt-in: the escape passes, not decoded');
  assert.equal(norm('/x/..%2fadmin', { escapedSlashes: 'unescape' }), '/admin', 'unescaped first, then the dot segment resolves: the decision sees /admin');
});

test('the query is forwarded as sent; reserved escapes stay escaped (upper-case); merge_slashes can be turned off', () => {
  assert.equal(norm('/a/b?x=1&y=%2F..'), '/a/b?x=1&y=%2F..');
  assert.equal(norm('/a%3fb'), '/a%3Fb');
  assert.equal(norm('/a%7e'), '/a~');
  assert.equal(norm('//a//b', { mergeSlashes: false }), '//a//b');
  assert.equal(norm('http://host:80/a/../b?q'), '/b?q');
  assert.equal(norm('*'), '*');
  assert.equal(norm('/a/b/'), '/a/b/');
  assert.equal(norm('/a/.'), '/a/');
});

test('header fields: CR, LF, NUL and non-token names are refused; underscore names are refused, dropped or kept as the mesh says', () => {
  assert.equal(headerFieldError({ 'x-ok': 'a b\tc', cookie: ['a=1', 'b=2'] }), undefined);
  assert.match(headerFieldError({ 'x-a': 'b\r\nx-debug: 1' }) ?? '', /CR, LF or NUL/);
  assert.match(headerFieldError({ 'x-a': ['ok', 'b\0'] }) ?? '', /CR, LF or NUL/);
  assert.match(headerFieldError({ 'X-Debug': '1' }) ?? '', /invalid header name/);
  assert.match(headerFieldError({ 'x debug': '1' }) ?? '', /invalid header name/);
  const h = () => ({ 'x_debug': '1', 'x-ok': '2' });
  assert.equal(applyUnderscoreAction(h()), 'x_debug');
  const dropped: Record<string, string> = h();
  assert.equal(applyUnderscoreAction(dropped, 'drop'), undefined);
  assert.deepEqual(dropped, { 'x-ok': '2' });
  const kept: Record<string, string> = h();
  assert.equal(applyUnderscoreAction(kept, 'allow'), undefined);
  assert.deepEqual(kept, h());
});

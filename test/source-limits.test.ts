// The per-source limits' bookkeeping on its own: every path a connection can take (refused, handshake abandoned,
// secured then closed) leaves the counts where they started, and the pool's agents pass the overall cap.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SourceLimits } from '../dataplane/inbound/source-limits.js';

test('pending and open counts follow every path back to zero; each limit answers with its own reason', () => {
  const l = new SourceLimits((ip) => ip === '127.0.98.1', { perSourcePending: 2, totalPending: 3, perSourceOpen: 3 });
  assert.equal(l.admit('127.0.98.9'), 'ok');
  assert.equal(l.admit('127.0.98.9'), 'ok');
  assert.equal(l.admit('127.0.98.9'), 'pending_per_source');
  assert.equal(l.admit('127.0.98.8'), 'ok');
  assert.equal(l.admit('127.0.98.7'), 'pending_total', 'three handshakes pending in all');
  assert.equal(l.admit('127.0.98.1'), 'ok', 'a pool agent is not shut out by strangers filling the overall cap');
  l.secured('127.0.98.9');
  l.closed('127.0.98.9', false); // the other one gave up before its handshake
  assert.deepEqual(l.of('127.0.98.9'), { pending: 0, open: 1 });
  assert.equal(l.admit('127.0.98.9'), 'ok');
  l.secured('127.0.98.9');
  assert.equal(l.admit('127.0.98.9'), 'ok');
  assert.equal(l.admit('127.0.98.9'), 'connections_per_source', 'two open and one pending reach its three');
  for (const [ip, secured] of [['127.0.98.9', true], ['127.0.98.9', true], ['127.0.98.9', false], ['127.0.98.8', false], ['127.0.98.1', false]] as const) l.closed(ip, secured);
  assert.equal(l.sources, 0, 'nothing left behind');
  l.closed('127.0.98.5', true); // a close for a source never seen changes nothing
  l.secured('127.0.98.5');
  assert.equal(l.sources, 0);
  assert.equal(l.admit('127.0.98.7'), 'ok', 'the overall cap frees up again');
});

// A Serf query as nodemesh answers it, without a network: once per (LTime, ID), re-gossiped unless told not to, acked
// when asked, filters honoured, keys listed only when there is one, key changes refused; malformed queries throw cleanly.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decode, encode, type GoValue } from '../membership/go-msgpack.js';
import { SerfQueries } from '../membership/serf-queries.js';

function harness(keys: string[] = ['a2V5LW9uZQ==']) {
  const sent: { msg: Buffer; addr: string; port: number }[] = [];
  const regossiped: Buffer[] = [];
  const q = new SerfQueries({
    name: 'me', tags: () => ({ role: 'web' }), rebroadcast: (raw) => regossiped.push(raw),
    send: (msg, addr, port) => sent.push({ msg, addr, port }), keys: () => keys,
    matches: (pattern, value) => new RegExp(pattern).test(value),
    isMember: (addr, port) => addr === '127.0.0.9' && port === 7946,
  });
  const ask = (body: Record<string, GoValue>) => {
    const msg = Buffer.concat([Buffer.from([4]), encode({ Addr: Buffer.from([127, 0, 0, 9]), Port: 7946, LTime: 5, ID: 1, Flags: 1, Name: 'q', Payload: null, ...body })]);
    q.receive(msg.subarray(1), msg);
  };
  const replies = () => sent.map((s) => ({ type: s.msg[0], body: decode(s.msg.subarray(1)) as Record<string, unknown>, to: `${s.addr}:${s.port}` }));
  return { ask, replies, regossiped };
}

test('acked once per (LTime, ID), re-gossiped once, unless the query says not to', () => {
  const h = harness();
  h.ask({});
  h.ask({});
  assert.equal(h.replies().length, 1, 'one ack for two copies');
  assert.equal(h.replies()[0].type, 5);
  assert.equal(h.replies()[0].body.Flags, 1);
  assert.equal(String(h.replies()[0].body.From), 'me');
  assert.equal(h.replies()[0].to, '127.0.0.9:7946');
  assert.equal(h.regossiped.length, 1);
  h.ask({ ID: 2, Flags: 3 });
  assert.equal(h.regossiped.length, 1, 'no-rebroadcast is honoured');
});

test('an answer goes only to a member\'s gossip address: a query naming another address gets none (no reflection)', () => {
  const h = harness();
  h.ask({ Addr: Buffer.from([127, 0, 0, 66]), Port: 53 });
  assert.equal(h.replies().length, 0);
  assert.equal(h.regossiped.length, 1, 'still passed on (the members it reaches decide the same)');
});

test('filters: a node list without us, or a tag that does not match, gets no answer', () => {
  const h = harness();
  h.ask({ ID: 1, Filters: [Buffer.concat([Buffer.from([0]), encode(['other'])])] });
  h.ask({ ID: 2, Filters: [Buffer.concat([Buffer.from([1]), encode({ Tag: 'role', Expr: '^db$' })])] });
  assert.equal(h.replies().length, 0);
  h.ask({ ID: 3, Filters: [Buffer.concat([Buffer.from([0]), encode(['me'])]), Buffer.concat([Buffer.from([1]), encode({ Tag: 'role', Expr: 'we' })])] });
  assert.equal(h.replies().length, 1);
});

test('_serf_list-keys: the one key; with two keys (a rotation) nothing is disclosed; key changes are refused', () => {
  const one = harness();
  one.ask({ Name: '_serf_list-keys', Flags: 0 });
  const [r] = one.replies();
  assert.equal(r.type, 5);
  const payload = r.body.Payload as Buffer;
  assert.equal(payload[0], 8, 'a key response');
  const keyResp = decode(payload.subarray(1)) as Record<string, unknown>;
  assert.equal(keyResp.Result, true);
  assert.deepEqual((keyResp.Keys as Buffer[]).map(String), ['a2V5LW9uZQ==']);
  const two = harness(['bmV3LWtleQ==', 'b2xkLWtleQ==']);
  two.ask({ Name: '_serf_list-keys', Flags: 0 });
  const refused = decode((two.replies()[0].body.Payload as Buffer).subarray(1)) as Record<string, unknown>;
  assert.equal(refused.Result, false);
  assert.deepEqual(refused.Keys, []);
  assert.doesNotMatch(JSON.stringify(two.replies().map((x) => String(x.body.Payload))), /bmV3|b2xk/, 'neither key appears');
  const change = harness();
  change.ask({ Name: '_serf_install-key', Flags: 0, Payload: encode({ Key: Buffer.alloc(32) }) });
  assert.equal((decode((change.replies()[0].body.Payload as Buffer).subarray(1)) as Record<string, unknown>).Result, false);
});

test('a malformed query throws before anything is sent (the gossip layer drops it)', () => {
  const sent: Buffer[] = [];
  const q = new SerfQueries({ name: 'me', tags: () => ({}), rebroadcast: (raw) => sent.push(raw), send: (msg) => sent.push(msg), keys: () => [], matches: () => false, isMember: () => true });
  for (const bad of [Buffer.from([0xc1]), encode([1, 2, 3]), encode({ LTime: 5, ID: 'x' })]) {
    assert.throws(() => q.receive(bad, bad), JSON.stringify([...bad]));
  }
  assert.deepEqual(sent, [], 'nothing answered, nothing passed on');
});

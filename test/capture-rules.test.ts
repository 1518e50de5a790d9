// The transparent-capture ruleset as text: one table of nodemesh's own, replaced whole, virtual IPs redirected in both
// hooks, transparent listeners closed to anything not redirected, workloads guarded (strict drops, permissive counts);
// the agent's side of it: written only on change, counters read back, removed on stop.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { Catalog } from '../catalog/catalog-store.js';
import { VirtualIps } from '../catalog/virtual-ips.js';
import { captureRuleset, removalRuleset } from '../dataplane/capture/capture-rules.js';
import { TransparentCapture } from '../dataplane/capture/transparent-capture.js';

const plan = { redirects: [{ vip: '240.1.2.3', port: 15100 }], guarded: [{ address: '198.18.3.2', port: 80 }], mode: 'strict' as const, excludeOutboundPorts: [] };

test('the table is created, deleted and written again in one file: applying it twice is applying it once', () => {
  const text = captureRuleset(plan);
  assert.match(text, /^table inet nodemesh\ndelete table inet nodemesh\ntable inet nodemesh \{/);
  assert.equal(text.match(/ip daddr 240\.1\.2\.3 meta l4proto tcp redirect to :15100/g)?.length, 2, 'prerouting (pods) and output (the host\'s own apps)');
  assert.match(text, /tcp dport \{ 15100 \} ct status ! dnat counter drop/);
  assert.match(text, /chain forward \{[^}]*ip daddr 198\.18\.3\.2 tcp dport 80 counter drop comment "strict"/);
  assert.match(text, /chain input \{[\s\S]*?ip daddr 198\.18\.3\.2 tcp dport 80 iifname != "lo" counter drop[\s\S]*?chain forward/);
  assert.equal(captureRuleset(plan), text, 'the same plan gives the same text');
});

test('permissive mode counts and accepts; excluded ports return before any redirect', () => {
  const text = captureRuleset({ ...plan, mode: 'permissive', excludeOutboundPorts: [53, 8600] });
  assert.match(text, /tcp dport 80 counter accept comment "permissive"/);
  assert.doesNotMatch(text, /tcp dport 80 counter drop/);
  assert.match(text, /tcp dport \{ 53, 8600 \} return\n    ip daddr 240\.1\.2\.3/);
});

test('nothing but IPv4 addresses and ports in range reach nft: anything else is a coded error', () => {
  for (const bad of [
    { ...plan, redirects: [{ vip: '240.1.2.3; flush ruleset', port: 15100 }] },
    { ...plan, guarded: [{ address: '::1', port: 80 }] },
    { ...plan, redirects: [{ vip: '240.1.2.3', port: 0 }] },
    { ...plan, excludeOutboundPorts: [70000] },
  ]) assert.throws(() => captureRuleset(bad), (e: Error & { code?: string }) => e.code === 'CAPTURE_RULES_INVALID', JSON.stringify(bad));
  assert.equal(removalRuleset(), 'table inet nodemesh\ndelete table inet nodemesh\n');
});

test('the agent writes the table only when it changes, reads the guards\' counters back from nft\'s JSON, and removes the table', async () => {
  const scripts: string[] = [];
  const capture = new TransparentCapture(new VirtualIps(new Catalog(), '240.0.0.0/4'), { mode: 'permissive', portBase: 15100, excludeOutboundPorts: [], excludeInboundPorts: [] }, pino({ level: 'silent' }), undefined, async (s) => { scripts.push(s); });
  const web = { ID: 'web-sidecar-proxy', Service: 'web-sidecar-proxy', Kind: 'connect-proxy', Tags: [], Meta: {}, Port: 21000, Address: '', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false, CreateIndex: 1, ModifyIndex: 1, Proxy: { DestinationServiceName: 'web', LocalServiceAddress: '198.18.3.2', LocalServicePort: 80 } } as never;
  await capture.apply(new Set(), [web], '198.18.1.1');
  await capture.apply(new Set(), [web], '198.18.1.1');
  assert.equal(scripts.length, 1, 'unchanged rules are not applied again');
  assert.match(scripts[0], /ip daddr 198\.18\.3\.2 tcp dport 80 counter accept comment "permissive"/);
  const json = JSON.stringify({ nftables: [{ metainfo: {} }, { chain: { name: 'forward' } }, { rule: { comment: 'permissive', expr: [
    { match: { op: '==', left: { payload: { field: 'daddr' } }, right: '198.18.3.2' } }, { match: { op: '==', left: { payload: { field: 'dport' } }, right: 80 } },
    { counter: { packets: 7, bytes: 420 } }, { accept: null }] } }] });
  assert.deepEqual(await capture.bypassCounts(async () => json), [{ address: '198.18.3.2', port: 80, packets: 7, mode: 'permissive' }]);
  assert.deepEqual(await capture.bypassCounts(async () => 'not json'), [], 'an unreadable answer is no count, not a crash');
  await capture.remove();
  assert.equal(scripts.at(-1), removalRuleset());
  assert.deepEqual(await capture.bypassCounts(async () => json), [], 'nothing installed, nothing counted');
});

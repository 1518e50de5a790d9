// The transparent-capture ruleset as text: one table of nodemesh's own, replaced whole, virtual IPs redirected in both
// hooks, transparent listeners closed to anything not redirected, workloads guarded (strict drops, permissive counts).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureRuleset, removalRuleset } from '../dataplane/capture/capture-rules.js';

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

// Virtual IPs of mesh services: the same address for a name on every agent whatever order the catalog filled in, in the
// configured range, never its first or last address, collisions settled the same everywhere; services outside the mesh get none.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Catalog } from '../catalog/catalog-store.js';
import { VirtualIps } from '../catalog/virtual-ips.js';
import { ipv4ToString, parseIpv4Range } from '../lib/ipv4-range.js';
import type { NodeInfo } from '../model/catalog-types.js';

const info = (node: string): NodeInfo => ({ ID: `id-${node}`, Node: node, Address: '127.0.0.1', Datacenter: 'dc1', TaggedAddresses: {}, Meta: {} });
const base = { Tags: [], Meta: {}, Port: 8080, Address: '', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false };

/** A catalog holding the given services on one node each: "name" typical, "name*" with a sidecar, "name!" Connect-native. */
function catalogOf(specs: string[]): Catalog {
  const c = new Catalog();
  for (const spec of specs) {
    const name = spec.replace(/[*!]$/, '');
    c.upsertNode(info(`n-${name}`));
    c.mutate(`n-${name}`, (tx) => {
      tx.putService({ ...base, ID: name, Service: name, ...(spec.endsWith('!') ? { Connect: { Native: true } } : {}) });
      if (spec.endsWith('*')) {
        tx.putService({ ...base, ID: `${name}-sidecar-proxy`, Service: `${name}-sidecar-proxy`, Kind: 'connect-proxy', Port: 21000, Proxy: { DestinationServiceName: name, DestinationServiceID: name, LocalServiceAddress: '127.0.0.1', LocalServicePort: 8080, Upstreams: [] } as never });
      }
    });
  }
  return c;
}

test('a name gets the same address on every agent, whatever order its catalog filled in; typical services get none', () => {
  const names = ['web*', 'api*', 'db', 'billing!', 'Reports*'];
  const one = new VirtualIps(catalogOf(names), '240.0.0.0/4');
  const two = new VirtualIps(catalogOf([...names].reverse()), '240.0.0.0/4');
  for (const n of ['web', 'api', 'billing', 'reports', 'REPORTS']) {
    assert.ok(one.of(n), `${n} has a virtual IP`);
    assert.equal(one.of(n), two.of(n), `${n}: the same on both agents`);
    assert.equal(one.serviceAt(one.of(n)!), n.toLowerCase());
    assert.match(one.of(n)!, /^(24\d|25[0-5])\./);
  }
  assert.equal(one.of('db'), undefined, 'not in the mesh');
});

test('in a range of two usable addresses the first two names by name order take them, the rest go without', () => {
  const r = parseIpv4Range('127.0.0.8/30');
  assert.deepEqual([ipv4ToString(r.base), r.size], ['127.0.0.8', 4]);
  const vips = new VirtualIps(catalogOf(['c*', 'a*', 'b*']), '127.0.0.8/30');
  assert.deepEqual(new Set([vips.of('a'), vips.of('b')]), new Set(['127.0.0.9', '127.0.0.10']), 'network and broadcast addresses never used');
  assert.equal(vips.of('c'), undefined);
});

test('a range is an IPv4 CIDR from /1 to /30; anything else is a coded config error', () => {
  for (const bad of ['240.0.0.0', '240.0.0.0/31', '240.0.0.0/0', '256.0.0.0/4', '::/8', '240.0.0.0/4 ']) {
    assert.throws(() => parseIpv4Range(bad), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID', bad);
  }
  assert.equal(ipv4ToString(parseIpv4Range('255.255.255.252/30').base), '255.255.255.252');
});

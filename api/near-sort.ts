// Consul's ?near=NODE (or _agent): answers ordered by the estimated round trip from that node, by network coordinates.

import { distance, type Coordinate } from '../membership/network-coordinate.js';

/**
 * An ordering for ?near=: nearest first by the coordinates' estimate, nodes with no coordinate last, the rest of the
 * order kept. No ?near=, or a node with no coordinate, leaves the answer as it was (as Consul does).
 */
export function nearSorter(query: URLSearchParams, self: string, coordinates: () => Map<string, Coordinate>): <T>(items: T[], nodeOf: (t: T) => string) => T[] {
  const near = query.get('near');
  if (!near) return (items) => items;
  return (items, nodeOf) => {
    const coords = coordinates();
    const from = coords.get(near === '_agent' ? self : near);
    if (!from) return items;
    const rtt = (name: string) => {
      const c = coords.get(name);
      return c ? distance(from, c) : Number.POSITIVE_INFINITY;
    };
    return items.map((item) => ({ item, d: rtt(nodeOf(item)) })).sort((a, b) => a.d - b.d).map((x) => x.item);
  };
}

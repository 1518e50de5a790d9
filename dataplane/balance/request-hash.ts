// The key a consistent-hashing policy routes a request on (header, cookie, query parameter or source address).

import type { IncomingHttpHeaders } from 'node:http';
import type { Target } from '../http/discovery-chain.js';

/** The key a hash-based policy routes on: the first hash policy that yields a value (all of them with Terminal unset), or none. */
export function hashKeyOf(target: Target, headers: IncomingHttpHeaders, remoteAddress: string | undefined, url: URL): string | undefined {
  if (target.lbPolicy !== 'ring_hash' && target.lbPolicy !== 'maglev') return undefined;
  const parts: string[] = [];
  for (const h of target.hashPolicies) {
    let v: string | undefined;
    if (h.SourceIP) v = remoteAddress;
    else if (h.Field === 'header') { const x = headers[String(h.FieldValue).toLowerCase()]; v = Array.isArray(x) ? x.join(',') : x; }
    else if (h.Field === 'query_parameter') v = url.searchParams.get(String(h.FieldValue)) ?? undefined;
    else if (h.Field === 'cookie') v = new RegExp(`(?:^|;\\s*)${String(h.FieldValue).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}=([^;]*)`).exec(String(headers.cookie ?? ''))?.[1];
    if (v === undefined) continue;
    parts.push(v);
    if (h.Terminal) break;
  }
  return parts.length ? parts.join('\0') : undefined;
}

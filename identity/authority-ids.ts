// Who a credential speaks for: the SPIFFE URIs that name a node's intermediate CA and a policy writer's certificate.

/** The URI SAN of a node's intermediate CA: what that node may sign (its catalog entry, its services' leaves). */
export const nodeAuthorityUri = (trustDomain: string, node: string) => `spiffe://${trustDomain}/agent/node/${node}`;

/** The URI SAN of a policy credential: it signs intentions and config entries for the whole pool. */
export const policyAuthorityUri = (trustDomain: string, name: string) => `spiffe://${trustDomain}/agent/policy/${name}`;

/**
 * What a certificate of the pool is an authority for: `root` for a trust anchor (everything, as before per-node
 * credentials), `node` for a node's intermediate, `policy` for a policy writer; undefined for anything else.
 */
export type Authority = { kind: 'root'; trustDomain: string } | { kind: 'node'; trustDomain: string; node: string } | { kind: 'policy'; trustDomain: string; name: string };

const AUTHORITY_PATH = /^\/agent\/(node|policy)\/([A-Za-z0-9._-]{1,128})$/;

/** Parses a node or policy authority URI; literal segments only (no percent-decoding, no dot segments). */
export function parseAuthorityUri(uri: string): Authority | undefined {
  const m = /^spiffe:\/\/([a-z0-9.-]{1,255})(\/[^?#]*)$/.exec(uri);
  if (!m) return undefined;
  const p = AUTHORITY_PATH.exec(m[2]);
  if (!p || p[2] === '.' || p[2] === '..') return undefined;
  return p[1] === 'node' ? { kind: 'node', trustDomain: m[1], node: p[2] } : { kind: 'policy', trustDomain: m[1], name: p[2] };
}

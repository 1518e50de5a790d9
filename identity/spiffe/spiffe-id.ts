// SPIFFE service identities in Consul's form: spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>.

import { NAME_CHARS } from '../../model/service-names.js';

export interface ServiceIdentity { trustDomain: string; namespace: string; datacenter: string; service: string; uri: string }

/** Segments are taken literally: no percent-decoding, so `%77eb` can never pass for `web`. */
const SEGMENT = `[${NAME_CHARS}]+`;
/** A trust domain as Consul writes it: lower case only (an upper-case one is refused, not folded), no port or userinfo. */
const TRUST_DOMAIN = '[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?';
/**
 * The one canonical spelling, matched on the raw string: WHATWG URL parsing would fold dot segments and the
 * scheme's case, so two spellings could name one identity. No query, fragment, port, userinfo, '%', or trailing '/'.
 */
const SERVICE_ID = new RegExp(`^spiffe://(${TRUST_DOMAIN})/ns/(${SEGMENT})/dc/(${SEGMENT})/svc/(${SEGMENT})$`);
/** The SPIFFE spec's limit on an ID's length. */
const MAX_ID_LENGTH = 2048;
const isDotSegment = (s: string) => s === '.' || s === '..';

/** Names that may appear in a SPIFFE service ID (and so get a leaf certificate); '.' and '..' would be dot segments. */
const SAFE = new RegExp(`^${SEGMENT}$`);
export const isSpiffeSafe = (name: string) => SAFE.test(name) && !isDotSegment(name);

/** Parses a canonical service SPIFFE URI; undefined for anything else (agent IDs, other schemes, non-canonical spellings, junk). */
export function parseServiceId(uri: string): ServiceIdentity | undefined {
  if (typeof uri !== 'string' || uri.length > MAX_ID_LENGTH) return undefined;
  const m = SERVICE_ID.exec(uri);
  if (!m) return undefined;
  const [trustDomain, ns, dc, svc] = m.slice(1);
  if ([ns, dc, svc].some(isDotSegment) || trustDomain.includes('..')) return undefined;
  return { trustDomain, namespace: ns, datacenter: dc, service: svc, uri };
}

/** The URI SANs of a peer certificate as Node reports them ("URI:a, DNS:b"). */
export function uriSans(subjectaltname: string | undefined): string[] {
  return (subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

/** The URI SAN of an agent's own certificate (Consul's agent form, with the node's name): what its peers talk to. */
export const agentIdentityUri = (trustDomain: string, datacenter: string, node: string) => `spiffe://${trustDomain}/agent/client/dc/${datacenter}/node/${node}`;

/** The node an agent URI names, in its trust domain; undefined for any other URI. */
export function parseAgentUri(uri: string): { trustDomain: string; node: string } | undefined {
  const m = /^spiffe:\/\/([a-z0-9.-]{1,255})\/agent\/client\/dc\/[A-Za-z0-9._-]{1,128}\/node\/([A-Za-z0-9._-]{1,128})$/.exec(uri);
  return m && m[2] !== '.' && m[2] !== '..' ? { trustDomain: m[1], node: m[2] } : undefined;
}

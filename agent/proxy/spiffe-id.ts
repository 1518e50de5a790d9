// SPIFFE service identities in Consul's form: spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>.

export interface ServiceIdentity { trustDomain: string; namespace: string; datacenter: string; service: string; uri: string }

/** Segments are taken literally: no percent-decoding, so `%77eb` can never pass for `web`. */
const SEGMENT = '[A-Za-z0-9._-]+';
const SERVICE_PATH = new RegExp(`^/ns/(${SEGMENT})/dc/(${SEGMENT})/svc/(${SEGMENT})$`);

/** Names that may appear in a SPIFFE service ID (and so get a leaf certificate). */
const SAFE = new RegExp(`^${SEGMENT}$`);
export const isSpiffeSafe = (name: string) => SAFE.test(name);

/** Parses a service SPIFFE URI; undefined for anything else (agent IDs, other schemes, junk). */
export function parseServiceId(uri: string): ServiceIdentity | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'spiffe:' || !u.host) return undefined;
  const m = SERVICE_PATH.exec(u.pathname);
  if (!m) return undefined;
  const [ns, dc, svc] = m.slice(1);
  return { trustDomain: u.host.toLowerCase(), namespace: ns, datacenter: dc, service: svc, uri };
}

/** The URI SANs of a peer certificate as Node reports them ("URI:a, DNS:b"). */
export function uriSans(subjectaltname: string | undefined): string[] {
  return (subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

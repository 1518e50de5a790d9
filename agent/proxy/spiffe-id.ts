// SPIFFE service identities in Consul's form: spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>.

export interface ServiceIdentity { trustDomain: string; namespace: string; datacenter: string; service: string; uri: string }

const SERVICE_PATH = /^\/ns\/([^/]+)\/dc\/([^/]+)\/svc\/([^/]+)$/;

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
  const [ns, dc, svc] = m.slice(1).map(decodeURIComponent);
  return { trustDomain: u.host.toLowerCase(), namespace: ns, datacenter: dc, service: svc, uri };
}

/** The URI SANs of a peer certificate as Node reports them ("URI:a, DNS:b"). */
export function uriSans(subjectaltname: string | undefined): string[] {
  return (subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

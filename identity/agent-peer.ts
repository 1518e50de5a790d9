// Which agent a peer certificate speaks for: an agent URI naming a node, signed by that node's intermediate or by a
// root of the trust bundle — every link checked by signature here, not taken from the chain the peer sent.

import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import { nodeAuthorityUri } from './authority-ids.js';
import { parseAgentUri, uriSans } from './spiffe/spiffe-id.js';

const current = (c: X509Certificate, now: number) => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);

/** `child` is `parent`'s by name and by signature. */
function signedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

/**
 * The node a peer certificate is the agent of, or why it is not one: no agent URI, another trust domain, or an issuer
 * that is neither one of `roots` nor that node's intermediate signed by one of them. The issuer is the certificate
 * the peer sent after its leaf: TLS verified *a* chain, but Node's view of it is built by names only, so a peer could
 * slip an expired look-alike of another node's intermediate in; each link is verified again (signature, validity).
 */
export function agentOf(cert: PeerCertificate, trustDomain: string, roots: readonly string[], now = Date.now()): { node: string } | { refused: string } {
  const uris = uriSans(cert.subjectaltname);
  const agent = uris.length === 1 ? parseAgentUri(uris[0]) : undefined;
  if (!agent) return { refused: 'the certificate names no agent (one spiffe://…/agent/client/dc/…/node/… URI)' };
  if (agent.trustDomain !== trustDomain.toLowerCase()) return { refused: `the agent is of trust domain ${agent.trustDomain}, not ${trustDomain}` };
  const issuerRaw = (cert as DetailedPeerCertificate).issuerCertificate?.raw;
  if (!cert.raw || !issuerRaw) return { refused: 'the certificate comes without its issuer' };
  let leaf: X509Certificate;
  let issuer: X509Certificate;
  try {
    leaf = new X509Certificate(cert.raw);
    issuer = new X509Certificate(issuerRaw);
  } catch {
    return { refused: 'the certificate or its issuer does not parse' };
  }
  if (!current(leaf, now) || !current(issuer, now)) return { refused: 'the certificate or its issuer is outside its validity' };
  if (!signedBy(leaf, issuer)) return { refused: 'the certificate is not signed by the issuer it came with' };
  const trusted = roots.map((p) => new X509Certificate(p));
  if (trusted.some((r) => r.raw.equals(issuer.raw))) return { node: agent.node };
  if (!issuer.ca || !uriSans(issuer.subjectAltName).includes(nodeAuthorityUri(agent.trustDomain, agent.node))) {
    return { refused: `the agent certificate for ${agent.node} is not signed by ${agent.node}'s own intermediate` };
  }
  if (!trusted.some((r) => current(r, now) && signedBy(issuer, r))) return { refused: `${agent.node}'s intermediate is not signed by a trusted root` };
  return { node: agent.node };
}

// Which agent a peer certificate speaks for: an agent URI naming a node, signed by that node's intermediate or by a
// root (the chain itself is verified by TLS against the trust bundle).

import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import { nodeAuthorityUri } from './authority-ids.js';
import { parseAgentUri, uriSans } from './spiffe/spiffe-id.js';

/**
 * The node a verified peer certificate is the agent of, or why it is not one: no agent URI, another trust domain, or
 * an issuer that is neither a root nor that node's intermediate (node B's key cannot speak for agent A).
 */
export function agentOf(cert: PeerCertificate, trustDomain: string): { node: string } | { refused: string } {
  const uris = uriSans(cert.subjectaltname);
  const agent = uris.length === 1 ? parseAgentUri(uris[0]) : undefined;
  if (!agent) return { refused: 'the certificate names no agent (one spiffe://…/agent/client/dc/…/node/… URI)' };
  if (agent.trustDomain !== trustDomain.toLowerCase()) return { refused: `the agent is of trust domain ${agent.trustDomain}, not ${trustDomain}` };
  const issuer = (cert as DetailedPeerCertificate).issuerCertificate;
  if (!issuer || !issuer.raw) return { refused: 'the certificate comes without its issuer' };
  const selfSigned = issuer.issuerCertificate === issuer || issuer.fingerprint256 === issuer.issuerCertificate?.fingerprint256;
  if (selfSigned && issuer.fingerprint256 !== cert.fingerprint256) return { node: agent.node };
  const issuerUris = uriSans(issuer.subjectaltname);
  if (!issuerUris.includes(nodeAuthorityUri(agent.trustDomain, agent.node))) return { refused: `the agent certificate for ${agent.node} is not signed by ${agent.node}'s own intermediate` };
  return { node: agent.node };
}

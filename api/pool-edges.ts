// The pool's edges, asked of every live agent that advertises a peer endpoint (in parallel, a few at a time, each
// bounded in time), with this agent's own: what GET /v1/pool/edges, the topology view and `nodemesh top` show.

import type { ConsulMember } from '../backend/gossip/gossip-membership.js';
import type { EdgeSummary } from '../dataplane/metrics/edge-stats.js';
import type { AgentCredential } from '../identity/ca/agent-credential.js';
import { fetchPeerEdges } from './peer-endpoint.js';

export interface NodeEdges { Node: string; Edges?: EdgeSummary[]; Error?: string }

/** Peers asked at once: a pool of hundreds is asked in waves, not with hundreds of handshakes at a time. */
const CONCURRENCY = 32;

export async function poolEdges(self: string, members: ConsulMember[], local: () => EdgeSummary[], credential: AgentCredential): Promise<NodeEdges[]> {
  const peers = members.filter((m) => m.Name !== self && m.Status === 1 && /^\d{1,5}$/.test(m.Tags.sp ?? ''));
  const out: NodeEdges[] = [{ Node: self, Edges: local() }];
  for (let i = 0; i < peers.length; i += CONCURRENCY) {
    out.push(...await Promise.all(peers.slice(i, i + CONCURRENCY).map(async (m): Promise<NodeEdges> => {
      try {
        return { Node: m.Name, Edges: await fetchPeerEdges({ node: m.Name, addr: m.Addr, port: Number(m.Tags.sp) }, credential.current()) };
      } catch (e) {
        return { Node: m.Name, Error: (e as Error).message };
      }
    })));
  }
  return out.sort((a, b) => (a.Node < b.Node ? -1 : a.Node > b.Node ? 1 : 0));
}

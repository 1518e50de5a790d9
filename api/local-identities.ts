// Which service identities this node may be issued: the names of the services registered on it and the
// destinations of its proxies — the rule behind "a node mints only its own workloads' identities".

import { NodemeshError } from '../lib/errors.js';
import { assertLeafName } from '../identity/ca/certificate-authority.js';
import type { LocalState } from '../local/local-state.js';

export interface LocalIdentities { node: string; names: Set<string> }

export function localIdentities(local: LocalState, node: string): LocalIdentities {
  const names = new Set<string>();
  for (const s of local.services()) {
    names.add(s.Service);
    if (s.Proxy?.DestinationServiceName) names.add(s.Proxy.DestinationServiceName);
  }
  return { node, names };
}

/** 400 for a name no SPIFFE ID may hold, 403 LEAF_NOT_LOCAL for a service not on this node. */
export function checkLeafIsLocal(service: string, ids: LocalIdentities): void {
  assertLeafName(service);
  if (!ids.names.has(service)) {
    throw new NodemeshError('LEAF_NOT_LOCAL', `Permission denied: no service "${service}" is registered on this node (${ids.node}); a leaf is issued only for this node's services: register it here first, or ask the agent on its node`, 403);
  }
}

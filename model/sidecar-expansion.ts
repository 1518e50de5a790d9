// Turns a service's Connect.SidecarService stanza into the connect-proxy registration Consul would make.

import type { ServiceRecord } from './catalog-types.js';
import type { ServiceInput } from './service-definition.js';
import { badRequest, isEmptyCheck } from './service-definition.js';

export const SIDECAR_MIN_PORT = 21000;
export const SIDECAR_MAX_PORT = 21255;

/**
 * Builds the sidecar's definition from the parent's. `existing` is the agent's current services, used
 * to keep a sidecar's port across re-registration and to skip ports other sidecars hold.
 */
export function expandSidecar(parent: ServiceRecord | Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>, sidecar: ServiceInput, existing: Iterable<ServiceRecord>, nodeAddress: string): ServiceInput {
  if (sidecar.Connect && (sidecar.Connect as { SidecarService?: unknown }).SidecarService) {
    throw badRequest('sidecar_service cannot have a nested sidecar_service', 'SIDECAR_INVALID');
  }
  if (sidecar.Kind && sidecar.Kind !== 'connect-proxy') throw badRequest(`sidecar_service can't have Kind ${JSON.stringify(sidecar.Kind)}: it is always "connect-proxy"`, 'SIDECAR_INVALID');
  const id = sidecar.ID || `${parent.ID}-sidecar-proxy`;
  let port = sidecar.Port ?? 0;
  if (port === 0) {
    const taken = new Set<number>();
    let previous = 0;
    for (const s of existing) {
      if (s.ID === id) previous = s.Port;
      else taken.add(s.Port); // any local service in the range holds its port, proxy or not (as Consul)
    }
    if (previous >= SIDECAR_MIN_PORT && previous <= SIDECAR_MAX_PORT && !taken.has(previous)) port = previous;
    for (let p = SIDECAR_MIN_PORT; port === 0 && p <= SIDECAR_MAX_PORT; p++) if (!taken.has(p)) port = p;
    if (port === 0) throw badRequest(`no free port for the sidecar in ${SIDECAR_MIN_PORT}-${SIDECAR_MAX_PORT}: give sidecar_service a Port`, 'SIDECAR_NO_PORT');
  }
  const proxy = sidecar.Proxy ?? {};
  const hasChecks = !isEmptyCheck(sidecar.Check) || (sidecar.Checks?.length ?? 0) > 0;
  return {
    ...sidecar,
    Kind: 'connect-proxy',
    ID: id,
    Name: sidecar.Name || `${parent.Service}-sidecar-proxy`,
    Port: port,
    Tags: sidecar.Tags ?? [...parent.Tags],
    Meta: sidecar.Meta ?? { ...parent.Meta },
    // Like Consul, the sidecar does not take the parent's address: its public listener is on the node's.
    Address: sidecar.Address ?? '',
    Proxy: {
      ...proxy,
      DestinationServiceName: parent.Service,
      DestinationServiceID: parent.ID,
      // Consul defaults to 127.0.0.1; a workload with its own address (a pod IP) is reached there instead.
      LocalServiceAddress: proxy.LocalServiceAddress || parent.Address || '127.0.0.1',
      LocalServicePort: proxy.LocalServicePort || parent.Port,
    },
    ...(hasChecks ? {} : {
      Checks: [
        { Name: 'Connect Sidecar Listening', TCP: `${sidecar.Address || nodeAddress}:${port}`, Interval: 10_000 },
        { Name: `Connect Sidecar Aliasing ${parent.ID}`, AliasService: parent.ID },
      ],
    }),
  };
}

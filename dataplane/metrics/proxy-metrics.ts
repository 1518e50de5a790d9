// Data-plane metrics: connections opened, denied and active, bytes each way, handshake time, leaf expiry.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LeafSource } from '../../identity/trust-sources.js';

export type Direction = 'inbound' | 'outbound';

/**
 * Every value `nodemesh_proxy_denied_total{reason}` takes (besides the per-source limits of source-limits.ts):
 * a failed handshake, a handshake without a client certificate, a certificate that names no acceptable identity,
 * one the catalog does not back, an L4 deny (by an intention or by the default policy), an L7 deny (or an L7
 * intention that could not be evaluated), a connection revoked when intentions changed, and on the outbound side
 * a caller that cannot be attributed, no endpoint, a failed dial or a circuit breaker's overflow.
 */
export type DenyReason =
  | 'tls_handshake' | 'no_client_cert' | 'identity' | 'identity_unbound' | 'intention' | 'default_policy'
  | 'l7_permission' | 'l7_error' | 'revoked' | 'attribution' | 'no_endpoint' | 'dial_failed' | 'overflow';

export class ProxyMetrics {
  readonly opened: Counter<'direction' | 'source' | 'destination'>;
  readonly denied: Counter<'direction' | 'source' | 'destination' | 'reason'>;
  /** Connections to a public listener that left before sending a byte (a TCP check): no denial. `source`: `agent_check` (this agent's own) or `unknown`. */
  readonly probes: Counter<'destination' | 'source'>;
  readonly active: Gauge<'direction' | 'source' | 'destination'>;
  readonly bytes: Counter<'direction' | 'source' | 'destination' | 'flow'>;
  readonly handshake: Histogram<'source' | 'destination'>;
  /** L7: requests by route and status class (2xx…5xx), and their latency in ms (Flagger's success-rate and duration checks read these). */
  readonly requests: Counter<'source' | 'destination' | 'route' | 'code_class'>;
  readonly requestMs: Histogram<'source' | 'destination' | 'route'>;
  readonly retries: Counter<'source' | 'destination' | 'route' | 'reason'>;

  constructor(registry: Registry, leaves: () => LeafSource | undefined) {
    const registers = [registry];
    this.opened = new Counter({ name: 'nodemesh_proxy_connections_total', help: 'Connections accepted and authorized, by direction, source and destination service.', labelNames: ['direction', 'source', 'destination'], registers });
    this.denied = new Counter({ name: 'nodemesh_proxy_denied_total', help: 'Connections refused or revoked, by reason.', labelNames: ['direction', 'source', 'destination', 'reason'], registers });
    this.probes = new Counter({ name: 'nodemesh_proxy_probes_total', help: 'Connections to a public listener that left without sending a byte (TCP health checks; source="agent_check" for this agent\'s own): not denials.', labelNames: ['destination', 'source'], registers });
    this.active = new Gauge({ name: 'nodemesh_proxy_active_connections', help: 'Open proxied connections.', labelNames: ['direction', 'source', 'destination'], registers });
    this.bytes = new Counter({ name: 'nodemesh_proxy_bytes_total', help: 'Bytes proxied; flow=tx is toward the destination, rx back to the source.', labelNames: ['direction', 'source', 'destination', 'flow'], registers });
    this.handshake = new Histogram({ name: 'nodemesh_proxy_handshake_seconds', help: 'Outbound TCP connect plus mTLS handshake time.', labelNames: ['source', 'destination'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5], registers });
    this.requests = new Counter({ name: 'nodemesh_l7_requests_total', help: 'HTTP requests through upstream listeners, by source, destination, route and status class.', labelNames: ['source', 'destination', 'route', 'code_class'], registers });
    this.requestMs = new Histogram({ name: 'nodemesh_l7_request_duration_ms', help: 'HTTP request latency through the mesh in milliseconds, first byte in to last byte out.', labelNames: ['source', 'destination', 'route'], buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000], registers });
    this.retries = new Counter({ name: 'nodemesh_l7_retries_total', help: 'HTTP request attempts retried, by reason (status, connect), and ones refused by the retry budget (budget).', labelNames: ['source', 'destination', 'route', 'reason'], registers });
    new Gauge({
      name: 'nodemesh_leaf_cert_expiry_seconds', help: 'Seconds until each local service\'s leaf certificate expires.', labelNames: ['service'], registers,
      collect() {
        this.reset();
        for (const { service, seconds } of leaves()?.expiries() ?? []) this.set({ service }, seconds);
      },
    });
  }
}

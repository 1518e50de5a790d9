// Data-plane metrics: connections opened, denied and active, bytes each way, handshake time, leaf expiry.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LeafSource } from '../../identity/trust-sources.js';
import { EdgeStats, type Direction } from './edge-stats.js';

export type { Direction } from './edge-stats.js';

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

type RequestLabel = 'direction' | 'source' | 'destination' | 'destination_service' | 'destination_subset' | 'route';
const REQUEST_LABELS: RequestLabel[] = ['direction', 'source', 'destination', 'destination_service', 'destination_subset', 'route'];

/** One finished request, for the L7 metrics. */
export interface RequestOutcome {
  direction: Direction;
  source: string;
  destination: string;
  /** Where the route sent it (a splitter or redirect may name another service), and the subset; empty when none was picked. */
  destinationService?: string;
  destinationSubset?: string;
  route: string;
  method: string;
  status: number;
  /** Absent for an upgrade, whose answer passes through as bytes (counted, not timed). */
  seconds?: number;
}

/** The methods counted by name; any other is `other`, so a client cannot grow the label set. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE']);

export const codeClass = (status: number) => `${Math.min(Math.max(Math.floor(status / 100), 1), 5)}xx`;

export class ProxyMetrics {
  readonly opened: Counter<'direction' | 'source' | 'destination'>;
  /** Refusals by reason (the counter, and the edge's last minute). */
  readonly denied: { inc(labels: { direction: Direction; source: string; destination: string; reason: string }): void };
  /** Every edge's last minute (golden metrics for the topology and `nodemesh top`). */
  readonly edges = new EdgeStats();
  /** Connections to a public listener that left before sending a byte (a TCP check): no denial. `source`: `agent_check` (this agent's own) or `unknown`. */
  readonly probes: Counter<'destination' | 'source'>;
  readonly active: Gauge<'direction' | 'source' | 'destination'>;
  readonly bytes: Counter<'direction' | 'source' | 'destination' | 'flow'>;
  readonly handshake: Histogram<'source' | 'destination'>;
  /**
   * L7: requests by edge (source → destination, and the service and subset the route sent it to), route, method and
   * status, on the caller's agent (direction="outbound") and on the callee's (direction="inbound"); their latency in
   * seconds. Flagger's success-rate and duration checks and the golden metrics read these.
   */
  readonly requests: Counter<RequestLabel | 'method' | 'code' | 'code_class'>;
  readonly requestSeconds: Histogram<RequestLabel>;
  /** L4: how long each proxied connection lived, by edge. */
  readonly connectionSeconds: Histogram<'direction' | 'source' | 'destination'>;
  readonly retries: Counter<'source' | 'destination' | 'route' | 'reason'>;

  constructor(registry: Registry, leaves: () => LeafSource | undefined) {
    const registers = [registry];
    this.opened = new Counter({ name: 'nodemesh_proxy_connections_total', help: 'Connections accepted and authorized, by direction, source and destination service.', labelNames: ['direction', 'source', 'destination'], registers });
    const denied = new Counter({ name: 'nodemesh_proxy_denied_total', help: 'Connections refused or revoked, by reason.', labelNames: ['direction', 'source', 'destination', 'reason'], registers });
    this.denied = {
      inc: (labels) => {
        denied.inc(labels);
        this.edges.denied({ direction: labels.direction, source: labels.source, destination: labels.destination, service: '', subset: '' }, labels.reason);
      },
    };
    this.probes = new Counter({ name: 'nodemesh_proxy_probes_total', help: 'Connections to a public listener that left without sending a byte (TCP health checks; source="agent_check" for this agent\'s own): not denials.', labelNames: ['destination', 'source'], registers });
    this.active = new Gauge({ name: 'nodemesh_proxy_active_connections', help: 'Open proxied connections.', labelNames: ['direction', 'source', 'destination'], registers });
    this.bytes = new Counter({ name: 'nodemesh_proxy_bytes_total', help: 'Bytes proxied; flow=tx is toward the destination, rx back to the source.', labelNames: ['direction', 'source', 'destination', 'flow'], registers });
    this.handshake = new Histogram({ name: 'nodemesh_proxy_handshake_seconds', help: 'Outbound TCP connect plus mTLS handshake time.', labelNames: ['source', 'destination'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5], registers });
    this.requests = new Counter({ name: 'nodemesh_l7_requests_total', help: 'HTTP requests by direction (outbound: the caller\'s agent, inbound: the callee\'s), edge, route, method and status.', labelNames: [...REQUEST_LABELS, 'method', 'code', 'code_class'], registers });
    this.requestSeconds = new Histogram({ name: 'nodemesh_l7_request_duration_seconds', help: 'HTTP request latency through the mesh, first byte in to last byte out.', labelNames: REQUEST_LABELS, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.connectionSeconds = new Histogram({ name: 'nodemesh_proxy_connection_duration_seconds', help: 'How long proxied connections lived, from authorization to close.', labelNames: ['direction', 'source', 'destination'], buckets: [0.01, 0.1, 1, 10, 60, 300, 1800, 3600], registers });
    this.retries = new Counter({ name: 'nodemesh_l7_retries_total', help: 'HTTP request attempts retried, by reason (status, connect), and ones refused by the retry budget (budget).', labelNames: ['source', 'destination', 'route', 'reason'], registers });
    new Gauge({
      name: 'nodemesh_leaf_cert_expiry_seconds', help: 'Seconds until each local service\'s leaf certificate expires.', labelNames: ['service'], registers,
      collect() {
        this.reset();
        for (const { service, seconds } of leaves()?.expiries() ?? []) this.set({ service }, seconds);
      },
    });
  }

  /**
   * A proxied connection was authorized and joined: counted and shown as open; the returned function, called when it
   * closes with the bytes each way, records its bytes and lifetime.
   */
  connectionOpened(labels: { direction: Direction; source: string; destination: string }): (tx: number, rx: number) => void {
    const started = process.hrtime.bigint();
    const edge = { ...labels, service: '', subset: '' };
    this.opened.inc(labels);
    this.active.inc(labels);
    this.edges.connectionOpened(edge);
    return (tx, rx) => {
      this.edges.connectionClosed(edge, tx, rx);
      this.active.dec(labels);
      this.bytes.inc({ ...labels, flow: 'tx' }, tx);
      this.bytes.inc({ ...labels, flow: 'rx' }, rx);
      this.connectionSeconds.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    };
  }

  observeRequest(o: RequestOutcome): void {
    const labels = {
      direction: o.direction, source: o.source, destination: o.destination,
      destination_service: o.destinationService ?? '', destination_subset: o.destinationSubset ?? '', route: o.route,
    };
    const method = METHODS.has(o.method) ? o.method : 'other';
    // A status outside 100–599 is counted as what it is, not as a free-form label.
    const code = o.status >= 100 && o.status <= 599 ? String(Math.trunc(o.status)) : 'other';
    this.requests.inc({ ...labels, method, code, code_class: codeClass(o.status) });
    if (o.seconds !== undefined) this.requestSeconds.observe(labels, o.seconds);
    this.edges.request({ direction: o.direction, source: o.source, destination: o.destination, service: labels.destination_service, subset: labels.destination_subset }, o.status, o.seconds);
  }
}

// Prometheus metrics for the agent: process, HTTP API traffic, catalog sizes and check states.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Catalog } from '../catalog/catalog-store.js';
import { HEALTH_STATUSES } from '../model/catalog-types.js';

export interface AgentMetrics {
  registry: Registry;
  observeHttp(route: string, method: string, code: number, seconds: number): void;
}

export function createMetrics(catalog: Catalog): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'nodemesh_http_requests_total', help: 'HTTP API requests by route, method and status code.',
    labelNames: ['route', 'method', 'code'], registers: [registry],
  });
  const latency = new Histogram({
    name: 'nodemesh_http_request_duration_seconds', help: 'HTTP API request latency (blocking queries included).',
    labelNames: ['route', 'method', 'code'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300, 600], registers: [registry],
  });
  new Gauge({
    name: 'nodemesh_catalog_entries', help: 'Catalog size by kind of entry.', labelNames: ['kind'], registers: [registry],
    collect() {
      const c = catalog.counts();
      this.set({ kind: 'nodes' }, c.nodes);
      this.set({ kind: 'services' }, c.services);
      this.set({ kind: 'checks' }, c.checks);
    },
  });
  new Gauge({
    name: 'nodemesh_checks', help: 'Health checks in the catalog by status.', labelNames: ['status'], registers: [registry],
    collect() {
      const counts = Object.fromEntries(HEALTH_STATUSES.map((s) => [s, 0])) as Record<string, number>;
      for (const c of catalog.allChecks()) counts[c.Status]++;
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'nodemesh_catalog_index', help: 'The catalog\'s current modify index.', registers: [registry],
    collect() { this.set(catalog.index); },
  });
  return {
    registry,
    observeHttp(route, method, code, seconds) {
      requests.inc({ route, method, code: String(code) });
      latency.observe({ route, method, code: String(code) }, seconds);
    },
  };
}

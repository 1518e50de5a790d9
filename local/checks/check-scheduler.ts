// Runs the agent's health checks: interval probes, TTL timers, aliases, pass/fail thresholds and the critical-service reaper.

import type { Logger } from 'pino';
import type { CheckRecord, HealthStatus } from '../../model/catalog-types.js';
import { probeHttp, probeTcp, type ProbeResult } from './check-probes.js';

/** What the scheduler needs from the agent's local state. */
export interface CheckHost {
  localChecks(): CheckRecord[];
  /** All checks of a node (this one when undefined), node-level ones included; undefined for an unknown node. */
  nodeChecks(node?: string): CheckRecord[] | undefined;
  /** Records a result; returns whether anything changed. Does not wait for disk. */
  setCheckStatus(checkId: string, status: HealthStatus, output: string): boolean;
  deregisterService(serviceId: string, reason: string): Promise<void>;
}

export interface CheckSchedulerOptions {
  reapIntervalMs: number;
  deregisterMinMs: number;
  log: Logger;
}

interface Runner { key: string; stop(): void; runNow?(): void }

const SEVERITY: Record<HealthStatus, number> = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

export class CheckScheduler {
  private readonly runners = new Map<string, Runner>();
  private readonly ttlTimers = new Map<string, NodeJS.Timeout>();
  private readonly criticalSince = new Map<string, number>();
  private readonly reaper: NodeJS.Timeout;
  private syncQueued = false;
  private stopped = false;

  constructor(private readonly host: CheckHost, private readonly opts: CheckSchedulerOptions) {
    this.reaper = setInterval(() => void this.reap(), opts.reapIntervalMs);
    this.reaper.unref();
  }

  /** Call after any change to the local checks; coalesced into one pass. */
  sync(): void {
    if (this.syncQueued || this.stopped) return;
    this.syncQueued = true;
    queueMicrotask(() => {
      this.syncQueued = false;
      if (!this.stopped) this.syncNow();
    });
  }

  private syncNow(): void {
    const checks = this.host.localChecks();
    const live = new Set<string>();
    for (const c of checks) {
      live.add(c.CheckID);
      const key = `${c.Type}:${JSON.stringify(c.Definition)}`;
      const r = this.runners.get(c.CheckID);
      if (!r || r.key !== key) {
        r?.stop();
        this.runners.set(c.CheckID, this.startRunner(c, key));
      }
      if (c.Status === 'critical') {
        if (!this.criticalSince.has(c.CheckID)) this.criticalSince.set(c.CheckID, Date.now());
      } else {
        this.criticalSince.delete(c.CheckID);
      }
    }
    for (const [id, r] of this.runners) {
      if (!live.has(id)) {
        r.stop();
        this.runners.delete(id);
        this.criticalSince.delete(id);
      }
    }
    this.updateAliases(checks);
  }

  private startRunner(c: CheckRecord, key: string): Runner {
    const def = c.Definition;
    if (c.Type === 'ttl') {
      this.armTtl(c.CheckID, def.TTL ?? 0);
      return { key, stop: () => this.disarmTtl(c.CheckID) };
    }
    if (c.Type !== 'http' && c.Type !== 'tcp') return { key, stop: () => undefined };
    const probe = c.Type === 'http' ? probeHttp : probeTcp;
    // As Consul's StatusHandler: the counters start at their thresholds, so the first result after
    // registration applies at once; warning counts as a success, anything worse as a failure.
    let successes = def.SuccessBeforePassing ?? 0;
    let failures = def.FailuresBeforeCritical ?? 0;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let running = false;
    const run = async () => {
      if (running) return;
      running = true;
      clearTimeout(timer);
      let r: ProbeResult;
      try {
        r = await probe(def);
      } catch (e) {
        r = { status: 'critical', output: `check failed: ${(e as Error).message}` };
      }
      running = false;
      if (stopped) return;
      if (r.status === 'passing' || r.status === 'warning') {
        successes++;
        failures = 0;
        if (successes >= (def.SuccessBeforePassing ?? 0)) this.host.setCheckStatus(c.CheckID, r.status, r.output);
      } else {
        failures++;
        successes = 0;
        if (failures >= (def.FailuresBeforeCritical ?? 0)) this.host.setCheckStatus(c.CheckID, r.status, r.output);
      }
      timer = setTimeout(run, def.Interval ?? 10_000);
    };
    // Like Consul, stagger the first run randomly within one interval so checks do not fire in lockstep.
    timer = setTimeout(run, Math.random() * Math.min(def.Interval ?? 10_000, 1000));
    return {
      key,
      stop: () => { stopped = true; clearTimeout(timer); },
      runNow: () => { if (!stopped) void run(); },
    };
  }

  private armTtl(id: string, ttl: number): void {
    this.disarmTtl(id);
    const t = setTimeout(() => {
      this.ttlTimers.delete(id);
      const c = this.host.localChecks().find((x) => x.CheckID === id);
      if (!c) return;
      const output = c.Output && c.Output !== 'TTL expired' && !c.Output.startsWith('TTL expired (')
        ? `TTL expired (last output before timeout follows): ${c.Output}` : 'TTL expired';
      this.opts.log.warn({ check: id }, 'check TTL expired');
      this.host.setCheckStatus(id, 'critical', output);
    }, ttl);
    this.ttlTimers.set(id, t);
  }

  private disarmTtl(id: string): void {
    clearTimeout(this.ttlTimers.get(id));
    this.ttlTimers.delete(id);
  }

  /** Probes a service's interval checks now instead of at their next tick (e.g. its listener just opened). */
  probeNow(serviceId: string): void {
    for (const c of this.host.localChecks()) if (c.ServiceID === serviceId) this.runners.get(c.CheckID)?.runNow?.();
  }

  /** A TTL check was updated through the API: its timer starts again. */
  ttlUpdated(id: string, ttl: number): void {
    if (!this.stopped) this.armTtl(id, ttl);
  }

  /** Alias checks take the worst status of the aliased service's checks and its node's own checks (as Consul). */
  private updateAliases(checks: CheckRecord[]): void {
    for (const c of checks) {
      if (c.Type !== 'alias') continue;
      const { AliasService: service, AliasNode: node } = c.Definition;
      const nodeChecks = this.host.nodeChecks(node);
      if (!nodeChecks) {
        this.host.setCheckStatus(c.CheckID, 'critical', `Node ${JSON.stringify(node)} not found`);
        continue;
      }
      const target = nodeChecks.filter((x) => x.CheckID !== c.CheckID && (x.ServiceID === '' || (service !== undefined && x.ServiceID === service)));
      let status: HealthStatus = 'passing';
      for (const t of target) if (SEVERITY[t.Status] > SEVERITY[status]) status = t.Status;
      const output = target.length === 0 ? 'No checks found.' : status === 'passing' ? 'All checks passing.' : `Aliased ${service ? 'service' : 'node'} has a ${status} check`;
      this.host.setCheckStatus(c.CheckID, status, output);
    }
  }

  private async reap(): Promise<void> {
    const now = Date.now();
    for (const c of this.host.localChecks()) {
      const after = c.Definition.DeregisterCriticalServiceAfter;
      const since = this.criticalSince.get(c.CheckID);
      if (!after || since === undefined || !c.ServiceID) continue;
      const limit = Math.max(after, this.opts.deregisterMinMs);
      if (now - since >= limit) {
        this.opts.log.info({ check: c.CheckID, service: c.ServiceID }, 'check critical for too long: deregistering its service');
        await this.host.deregisterService(c.ServiceID, `check ${c.CheckID} critical for over ${limit}ms`).catch((e: Error) =>
          this.opts.log.error({ err: e.message, service: c.ServiceID }, 'reaper could not deregister service'));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.reaper);
    for (const r of this.runners.values()) r.stop();
    this.runners.clear();
    for (const t of this.ttlTimers.values()) clearTimeout(t);
    this.ttlTimers.clear();
  }
}

// The agent's own services and checks: registration rules, the write path to the catalog, and durability.

import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog-store.js';
import { NodemeshError } from '../lib/errors.js';
import { StateFile } from '../lib/state-file.js';
import type { CheckRecord, HealthStatus, NodeInfo, NodeSnapshot, ServiceRecord } from '../model/catalog-types.js';
import { truncateOutput } from './checks/check-probes.js';
import { CheckScheduler } from './checks/check-scheduler.js';
import type { CheckInput, CheckSpec, ServiceInput } from '../model/service-definition.js';
import { badRequest, checkSpec, normalizeService } from '../model/service-definition.js';
import { expandSidecar } from '../model/sidecar-expansion.js';

/** Consul's node-level liveness check; this agent vouches for itself until gossip takes over. */
export const SERF_HEALTH = 'serfHealth';

interface PersistedState {
  format: 1;
  index: number;
  node: NodeSnapshot;
  /** IDs of services that came from config files: replaced, not kept, on the next start. */
  configServices: string[];
}

export interface LocalStateOptions {
  catalog: Catalog;
  node: NodeInfo;
  statePath: string;
  log: Logger;
  reapIntervalMs: number;
  deregisterMinMs: number;
}

export class LocalState {
  readonly catalog: Catalog;
  readonly nodeName: string;
  private readonly file: StateFile<PersistedState>;
  private readonly log: Logger;
  private readonly configServices = new Set<string>();
  private writeLock: Promise<void> = Promise.resolve();
  readonly checks: CheckScheduler;

  constructor(opts: LocalStateOptions) {
    this.catalog = opts.catalog;
    this.nodeName = opts.node.Node;
    this.log = opts.log;
    this.catalog.upsertNode(opts.node);
    this.file = new StateFile(opts.statePath, () => this.persistedForm());
    this.checks = new CheckScheduler({
      localChecks: () => this.agentChecks(),
      nodeChecks: (node) => { const n = this.catalog.getNode(node ?? this.nodeName); return n ? [...n.checks.values()] : undefined; },
      setCheckStatus: (id, status, output) => this.setCheckResult(id, status, output),
      deregisterService: (id) => this.deregisterService(id),
    }, { reapIntervalMs: opts.reapIntervalMs, deregisterMinMs: opts.deregisterMinMs, log: opts.log });
  }

  private get entry() {
    const e = this.catalog.getNode(this.nodeName);
    if (!e) throw new NodemeshError('LOCAL_NODE_MISSING', 'local node missing from catalog', 500);
    return e;
  }

  private persistedForm(): PersistedState {
    const node = this.catalog.snapshotNode(this.nodeName)!;
    node.checks = node.checks.filter((c) => c.CheckID !== SERF_HEALTH);
    return { format: 1, index: this.catalog.index, node, configServices: [...this.configServices] };
  }

  /** Restores what the last run acknowledged, then registers config-file services. */
  async start(configServices: Record<string, unknown>[], decode: (o: Record<string, unknown>) => ServiceInput): Promise<void> {
    const saved = await this.file.load();
    const info = this.entry.info;
    if (saved) {
      if (saved.format !== 1) throw new NodemeshError('STATE_FORMAT', `state file ${this.file.path} has unknown format ${String(saved.format)}`);
      // Check results are saved in the background, so the last index clients saw may be a little past
      // the saved one: start beyond it, so their blocking queries see the next change.
      this.catalog.raiseIndex(saved.index + 1000);
      const staleConfig = new Set(saved.configServices);
      this.catalog.restoreNode({
        ...saved.node,
        info,
        services: saved.node.services.filter((s) => !staleConfig.has(s.ID)),
        checks: saved.node.checks.filter((c) => !staleConfig.has(c.ServiceID)).map((c) => ({ ...c, Node: info.Node })),
      });
      this.log.info({ services: this.entry.services.size, checks: this.entry.checks.size, path: this.file.path }, 'restored local state');
    }
    this.catalog.mutate(this.nodeName, (tx) => {
      tx.putCheck({
        CheckID: SERF_HEALTH, Name: 'Serf Health Status', Status: 'passing', Notes: '', Output: 'Agent alive and reachable',
        ServiceID: '', ServiceName: '', ServiceTags: [], Type: '', Definition: {},
      });
    });
    for (const raw of configServices) {
      const input = decode(raw);
      await this.registerService(input, { replaceExistingChecks: true, fromConfig: true });
    }
    this.checks.sync();
    await this.file.save();
  }

  // ---- reads ----

  services(): ServiceRecord[] {
    return [...this.entry.services.values()].sort((a, b) => a.ID.localeCompare(b.ID));
  }

  service(id: string): ServiceRecord | undefined {
    return this.entry.services.get(id);
  }

  /** The agent's checks (everything on this node but the node-level serfHealth). */
  agentChecks(): CheckRecord[] {
    return [...this.entry.checks.values()].filter((c) => c.CheckID !== SERF_HEALTH).sort((a, b) => a.CheckID.localeCompare(b.CheckID));
  }

  // ---- writes: each resolves once the change is on disk ----

  /**
   * Applies a change, saves it, and rolls the node back if the save fails. Writes run one at a time,
   * so a rollback can only ever undo its own change, never another request's acknowledged one.
   */
  private commit(change: () => void): Promise<void> {
    const run = this.writeLock.then(async () => {
      const before = this.catalog.snapshotNode(this.nodeName)!;
      change();
      this.checks.sync();
      try {
        await this.file.save();
      } catch (e) {
        this.catalog.restoreNode(before);
        this.checks.sync();
        this.log.error({ err: (e as Error).message }, 'could not save local state; change rolled back');
        throw new NodemeshError('STATE_WRITE_FAILED', `could not save agent state: ${(e as Error).message}`, 500);
      }
    });
    this.writeLock = run.catch(() => undefined);
    return run;
  }

  async registerService(input: ServiceInput, opts: { replaceExistingChecks?: boolean; fromConfig?: boolean } = {}): Promise<ServiceRecord> {
    const main = normalizeService(input);
    let sidecar: ReturnType<typeof normalizeService> | undefined;
    let stored!: ServiceRecord;
    await this.commit(() => {
      // Expanded under the write lock, so two sidecars registered at once never get the same port.
      const existing = [...this.entry.services.values()];
      sidecar = main.sidecar ? normalizeService(expandSidecar(main.service, main.sidecar, existing, this.entry.info.Address)) : undefined;
      if (sidecar) sidecar.service.LocallyRegisteredAsSidecar = true;
      this.catalog.mutate(this.nodeName, (tx) => {
        for (const part of sidecar ? [main, sidecar] : [main]) {
          const rec = tx.putService(part.service);
          if (part === main) stored = rec;
          this.writeChecks(tx, rec, part.checks, opts.replaceExistingChecks ?? false);
        }
      });
      for (const s of sidecar ? [main.service.ID, sidecar.service.ID] : [main.service.ID]) {
        if (opts.fromConfig) this.configServices.add(s);
        else this.configServices.delete(s);
      }
    });
    this.log.info({ service: stored.ID, name: stored.Service, sidecar: sidecar?.service.ID }, 'service registered');
    return stored;
  }

  /**
   * Applies a new set of config-file service definitions: registers new and changed ones, removes the
   * config services no longer defined, and leaves API-registered services alone. Every definition is
   * validated first, so a bad file changes nothing.
   */
  async reloadConfigServices(configServices: Record<string, unknown>[], decode: (o: Record<string, unknown>) => ServiceInput): Promise<{ registered: string[]; removed: string[] }> {
    const inputs = configServices.map((raw) => decode(raw));
    const before = new Set(this.configServices);
    const keep = new Set<string>();
    for (const input of inputs) {
      const rec = await this.registerService(input, { replaceExistingChecks: true, fromConfig: true });
      keep.add(rec.ID);
      for (const s of this.entry.services.values()) if (s.LocallyRegisteredAsSidecar && s.Proxy?.DestinationServiceID === rec.ID) keep.add(s.ID);
    }
    const removed = [...before].filter((id) => !keep.has(id));
    for (const id of removed) await this.deregisterService(id);
    return { registered: [...keep].sort(), removed: removed.sort() };
  }

  private writeChecks(tx: Parameters<Parameters<Catalog['mutate']>[1]>[0], svc: ServiceRecord, specs: CheckSpec[], replace: boolean): void {
    const keep = new Set(specs.map((c) => c.CheckID));
    if (replace) {
      for (const c of [...tx.entry.checks.values()]) if (c.ServiceID === svc.ID && !keep.has(c.CheckID)) tx.deleteCheck(c.CheckID);
    }
    for (const spec of specs) this.putCheck(tx, spec, svc);
  }

  private putCheck(tx: Parameters<Parameters<Catalog['mutate']>[1]>[0], spec: CheckSpec, svc: ServiceRecord | undefined, explicitStatus = false): void {
    const prev = tx.entry.checks.get(spec.CheckID);
    // Re-registering an existing check keeps its last status unless the new definition sets one.
    const keepStatus = prev && !explicitStatus && prev.Type === spec.Type;
    tx.putCheck({
      CheckID: spec.CheckID, Name: spec.Name, Notes: spec.Notes, Type: spec.Type, Definition: spec.Definition,
      Status: keepStatus ? prev.Status : spec.Status,
      Output: keepStatus ? prev.Output : '',
      ServiceID: svc?.ID ?? '', ServiceName: svc?.Service ?? '', ServiceTags: svc ? [...svc.Tags] : [],
    });
  }

  /** Removes a service, its checks and its sidecar. Unknown IDs are fine (Consul answers 200). */
  async deregisterService(id: string): Promise<void> {
    // Only the sidecar registered with this service goes with it; a separately registered proxy stays (as Consul).
    const sidecars = [...this.entry.services.values()].filter((s) => s.LocallyRegisteredAsSidecar && s.Proxy?.DestinationServiceID === id).map((s) => s.ID);
    const ids = [id, ...sidecars];
    if (!ids.some((x) => this.entry.services.has(x))) return;
    await this.commit(() => {
      this.catalog.mutate(this.nodeName, (tx) => {
        for (const sid of ids) {
          tx.deleteService(sid);
          for (const c of [...tx.entry.checks.values()]) if (c.ServiceID === sid) tx.deleteCheck(c.CheckID);
          this.configServices.delete(sid);
        }
      });
    });
    this.log.info({ service: id, sidecars }, 'service deregistered');
  }

  async registerCheck(input: CheckInput): Promise<void> {
    if (!input.Name) throw badRequest('Missing check name', 'CHECK_NAME_MISSING');
    const serviceId = input.ServiceID ?? '';
    const svc = serviceId ? this.entry.services.get(serviceId) : undefined;
    if (serviceId && !svc) throw badRequest(`ServiceID "${serviceId}" does not exist`, 'CHECK_SERVICE_UNKNOWN');
    const spec = checkSpec(input, { id: input.Name, name: input.Name, serviceId });
    if (spec.CheckID === SERF_HEALTH) throw badRequest(`Check ID "${SERF_HEALTH}" is reserved for the node's own health`, 'CHECK_ID_RESERVED');
    await this.commit(() => {
      this.catalog.mutate(this.nodeName, (tx) => this.putCheck(tx, spec, svc, Boolean(input.Status)));
    });
  }

  async deregisterCheck(id: string): Promise<void> {
    if (id === SERF_HEALTH || !this.entry.checks.has(id)) return;
    await this.commit(() => {
      this.catalog.mutate(this.nodeName, (tx) => tx.deleteCheck(id));
    });
  }

  /**
   * Consul's maintenance mode: a critical check, `_node_maintenance` for the node or `_service_maintenance:ID` for one
   * service, takes it out of every healthy answer until maintenance is turned off. Turning it off when it is off is fine.
   */
  async setMaintenance(serviceId: string | undefined, enable: boolean, reason: string): Promise<void> {
    const svc = serviceId === undefined ? undefined : this.entry.services.get(serviceId);
    if (serviceId !== undefined && !svc) throw new NodemeshError('SERVICE_UNKNOWN', `No service registered with ID "${serviceId}"`, 404);
    const id = svc ? `_service_maintenance:${svc.ID}` : '_node_maintenance';
    if (!enable) return this.deregisterCheck(id);
    const what = svc ? 'service' : 'node';
    await this.commit(() => {
      this.catalog.mutate(this.nodeName, (tx) => tx.putCheck({
        CheckID: id, Name: svc ? 'Service Maintenance Mode' : 'Node Maintenance Mode', Type: 'maintenance', Definition: {},
        Notes: reason || `Maintenance mode is enabled for this ${what}, but no reason was provided. This is a default message.`,
        Status: 'critical', Output: '', ServiceID: svc?.ID ?? '', ServiceName: svc?.Service ?? '', ServiceTags: svc ? [...svc.Tags] : [],
      }));
    });
  }

  /** A TTL check's status set through the API. */
  async updateTtl(id: string, status: HealthStatus, output: string): Promise<void> {
    const check = this.entry.checks.get(id);
    if (!check || check.Type !== 'ttl') throw new NodemeshError('CHECK_NOT_TTL', `CheckID "${id}" does not have associated TTL`, 500);
    const max = check.Definition.OutputMaxSize || undefined;
    await this.commit(() => {
      this.catalog.mutate(this.nodeName, (tx) => tx.setCheckStatus(id, status, truncateOutput(output, max)));
      // Re-armed with the change, not after the save: the old timer must not expire during the fsync.
      this.checks.ttlUpdated(id, check.Definition.TTL ?? 0);
    });
  }

  /** A result from a check runner: applied now, saved in the background. */
  private setCheckResult(id: string, status: HealthStatus, output: string): boolean {
    const check = this.entry.checks.get(id);
    if (!check) return false;
    const out = truncateOutput(output, check.Definition.OutputMaxSize || undefined);
    if (check.Status === status) {
      // Output-only changes (a timestamp in a health page) neither move the index nor wake blocking
      // queries, as Consul, which syncs them at most every few minutes; they are saved lazily.
      if (check.Output !== out) {
        this.catalog.setCheckOutputQuietly(this.nodeName, id, out);
        this.file.save().catch((e: Error) => this.log.error({ err: e.message }, 'could not save check output'));
      }
      return false;
    }
    const changed = this.catalog.mutate(this.nodeName, (tx) => tx.setCheckStatus(id, status, out));
    if (changed) {
      if (check.Status !== status) this.log.info({ check: id, from: check.Status, to: status }, 'check status changed');
      this.checks.sync();
      this.file.save().catch((e: Error) => this.log.error({ err: e.message }, 'could not save check status'));
    }
    return changed;
  }

  async close(): Promise<void> {
    this.checks.stop();
    await this.file.flush();
  }
}

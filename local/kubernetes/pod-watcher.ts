// The Kubernetes pod source: lists and watches this node's pods and keeps their nodemesh registrations in step.

import { existsSync } from 'node:fs';
import type { Agent } from 'node:http';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { CoreV1Api, KubeConfig, V1Pod, V1PodList, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { NodemeshError } from '../../lib/errors.js';
import { CoalescingRunner } from '../../lib/coalescing-runner.js';
import { podService, type PodService } from './pod-registrations.js';

/** The client library takes half a second to load: only an agent that finds a cluster pays for it. */
type K8s = typeof import('@kubernetes/client-node');
let k8sModule: Promise<K8s> | undefined;
const loadK8s = () => (k8sModule ??= import('@kubernetes/client-node'));

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface PodWatcherHooks {
  /** Registers (or replaces) a pod's service. May throw: the watcher logs it and tries again later. */
  register(def: PodService): Promise<void>;
  /** Removes a service this watcher registered. May throw: logged and retried. */
  deregister(id: string): Promise<void>;
  /**
   * IDs this source registered in an earlier run (the agent restores them from its state file). After
   * the first list, those no pod claims any more are deregistered.
   */
  previous?(): Iterable<string>;
}

export interface PodWatcherOptions extends PodWatcherHooks {
  kubeConfig: KubeConfig;
  /** This node's name (`spec.nodeName` of its pods): only those pods are listed and watched. */
  nodeName: string;
  log: Logger;
  /** Where upstream listeners open; defaults to each pod's `status.hostIP`. */
  upstreamBindAddress?: string;
  /** First delay before re-listing after a failure (default 1 s); doubles on each failure in a row. */
  initialBackoffMs?: number;
  /** Longest delay between re-lists (default 30 s); a watch that stays up this long resets the backoff. */
  maxBackoffMs?: number;
  /** Asks the API server to end each watch after this long (default a random 5–10 min), so lists stay fresh. */
  watchTimeoutSeconds?: number;
}

interface Wanted { def: PodService; hash: string }
interface Applied { id: string; hash: string }

function describe(e: unknown): { err: string; status?: number } {
  const x = e as { message?: string; statusCode?: number; code?: unknown };
  const status = typeof x?.statusCode === 'number' ? x.statusCode : typeof x?.code === 'number' ? x.code : undefined;
  const text = x?.message ?? String(e);
  return { err: text.length > 300 ? `${text.slice(0, 300)}…` : text, ...(status !== undefined ? { status } : {}) };
}

/** Where a Kubernetes config can be found, in the client library's order; undefined when there is none. */
export function kubeConfigSource(log?: Logger): { kind: 'files'; files: string[] } | { kind: 'in-cluster' } | undefined {
  const env = process.env;
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  if (listed.length > 0) {
    const files = listed.filter((f) => existsSync(f));
    if (files.length > 0) return { kind: 'files', files };
    log?.warn({ KUBECONFIG: env.KUBECONFIG }, 'KUBECONFIG names no existing file; ignoring it');
  }
  const host = Boolean(env.KUBERNETES_SERVICE_HOST);
  const token = existsSync(SERVICE_ACCOUNT_TOKEN);
  if (host && token) return { kind: 'in-cluster' };
  if (host !== token) {
    log?.warn({ KUBERNETES_SERVICE_HOST: env.KUBERNETES_SERVICE_HOST ?? null, serviceAccountToken: token },
      'half an in-cluster Kubernetes config (needs both KUBERNETES_SERVICE_HOST and the service-account token); ignoring it');
  }
  if (listed.length === 0) {
    const home = join(homedir(), '.kube', 'config');
    if (existsSync(home)) return { kind: 'files', files: [home] };
  }
  return undefined;
}

export class PodWatcher {
  private readonly o: PodWatcherOptions;
  private readonly log: Logger;
  private readonly fieldSelector: string;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;

  /** Pods that should be registered now, by UID. */
  private readonly wanted = new Map<string, Wanted>();
  /** What is registered: pod UID (or `previous:<id>` for an earlier run's) → service ID and definition hash. */
  private readonly applied = new Map<string, Applied>();
  /** The last problem logged per pod UID, so a malformed pod is reported once, not on every update. */
  private readonly reported = new Map<string, string>();

  private api?: CoreV1Api;
  private watch?: Watch;
  private started = false;
  private stopped = false;
  /** Bumped on every list: callbacks of older watches are ignored. */
  private generation = 0;
  private endedGeneration = -1;
  private watchStartedAt = 0;
  private failures = 0;
  private controller?: AbortController;
  /** The connection agent of the current watch request: destroying it cancels a request still waiting for headers. */
  private watchAgent?: Agent;
  private listAbort?: AbortController;
  private relistTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private retryFailures = 0;
  private readonly syncer = new CoalescingRunner(() => this.syncOnce(), () => this.stopped);

  constructor(opts: PodWatcherOptions) {
    this.o = opts;
    this.log = opts.log.child({ component: 'k8s-pods' });
    this.fieldSelector = `spec.nodeName=${opts.nodeName}`;
    this.initialBackoffMs = opts.initialBackoffMs ?? 1000;
    this.maxBackoffMs = Math.max(opts.maxBackoffMs ?? 30_000, this.initialBackoffMs);
  }

  /**
   * A watcher for the cluster this process finds itself in (in-cluster service account, KUBECONFIG or
   * ~/.kube/config), or undefined without one: without a cluster this source stays off. It also stays off
   * (with a warning) when a config exists but no node name is known (env NODE_NAME, from the downward
   * API's spec.nodeName), so a developer's kubeconfig never turns it on by accident.
   */
  static async fromEnvironment(
    log: Logger,
    opts: Omit<PodWatcherOptions, 'kubeConfig' | 'nodeName' | 'log'> & { nodeName?: string },
  ): Promise<PodWatcher | undefined> {
    const source = kubeConfigSource(log);
    if (!source) {
      log.debug('no Kubernetes config found: pod registration stays off');
      return undefined;
    }
    const nodeName = opts.nodeName ?? process.env.NODE_NAME;
    if (!nodeName) {
      log.warn({ source: source.kind === 'files' ? source.files : source.kind },
        'a Kubernetes config was found but NODE_NAME is not set: pod registration stays off (set NODE_NAME from spec.nodeName with the downward API)');
      return undefined;
    }
    const { KubeConfig } = await loadK8s();
    const kubeConfig = new KubeConfig();
    const where = source.kind === 'files' ? source.files.join(delimiter) : 'in-cluster service account';
    try {
      if (source.kind === 'in-cluster') kubeConfig.loadFromCluster();
      else {
        kubeConfig.loadFromFile(source.files[0]);
        for (const f of source.files.slice(1)) {
          const more = new KubeConfig();
          more.loadFromFile(f);
          kubeConfig.mergeConfig(more);
        }
      }
    } catch (e) {
      throw new NodemeshError('K8S_CONFIG_INVALID', `cannot load the Kubernetes config (${where}): ${(e as Error).message}`, 1);
    }
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new NodemeshError('K8S_CONFIG_INVALID', `the Kubernetes config (${where}) has no current context with a cluster`, 1);
    log.info({ source: where, server: cluster.server, node: nodeName }, 'Kubernetes config found: registering this node\'s annotated pods');
    return new PodWatcher({ ...opts, kubeConfig, nodeName, log });
  }

  /** Lists this node's pods, registers the ready annotated ones, and follows changes until stop(). */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const id of this.o.previous?.() ?? []) this.applied.set(`previous:${id}`, { id, hash: '' });
    this.log.info({ node: this.o.nodeName }, 'watching this node\'s pods');
    void this.cycle();
  }

  /** Aborts the list or watch in flight, clears every timer, and waits for a registration in progress. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      clearTimeout(this.relistTimer);
      clearTimeout(this.retryTimer);
      this.relistTimer = this.retryTimer = undefined;
      this.listAbort?.abort();
      this.controller?.abort();
      this.watchAgent?.destroy();
      this.controller = this.watchAgent = undefined;
    }
    await this.syncer.current?.catch(() => undefined);
  }

  /** Pod UID → registered service ID (a snapshot, for diagnostics and tests). */
  registrations(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [k, v] of this.applied) if (!k.startsWith('previous:')) out.set(k, v.id);
    return out;
  }

  // ---- list and watch ----

  private async cycle(): Promise<void> {
    this.relistTimer = undefined;
    if (this.stopped) return;
    const gen = ++this.generation;
    let list: V1PodList;
    const abort = new AbortController();
    this.listAbort = abort;
    try {
      const k8s = await loadK8s();
      this.api ??= this.o.kubeConfig.makeApiClient(k8s.CoreV1Api);
      this.watch ??= new k8s.Watch(this.watchConfig());
      const keep = <T>(v: T) => new k8s.Observable(Promise.resolve(v));
      list = await this.api.listPodForAllNamespaces({ fieldSelector: this.fieldSelector }, {
        middleware: [{ pre: (ctx) => { ctx.setSignal(abort.signal); return keep(ctx); }, post: (res) => keep(res) }],
        middlewareMergeStrategy: 'append',
      });
    } catch (e) {
      if (this.stopped) return;
      this.log.warn({ code: 'K8S_LIST_FAILED', node: this.o.nodeName, ...describe(e) }, 'listing this node\'s pods failed');
      this.scheduleRelist();
      return;
    } finally {
      if (this.listAbort === abort) this.listAbort = undefined;
    }
    if (this.stopped) return;
    this.replaceAll(list.items ?? []);
    void this.sync();
    const resourceVersion = list.metadata?.resourceVersion ?? '';
    this.log.debug({ pods: list.items?.length ?? 0, resourceVersion }, 'listed this node\'s pods');
    await this.openWatch(gen, resourceVersion);
  }

  /**
   * The config the Watch uses: the same, but it keeps the connection agent of each request, because the
   * Watch hands out its AbortController only once response headers arrived.
   */
  private watchConfig(): KubeConfig {
    const kc = this.o.kubeConfig;
    const wrapped = Object.create(kc) as KubeConfig;
    wrapped.applyToFetchOptions = async (opts) => {
      const init = await kc.applyToFetchOptions(opts);
      if (init.agent && typeof init.agent === 'object') this.watchAgent = init.agent as Agent;
      return init;
    };
    return wrapped;
  }

  private async openWatch(gen: number, resourceVersion: string): Promise<void> {
    this.watchStartedAt = Date.now();
    const timeoutSeconds = this.o.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
    let controller: AbortController;
    try {
      controller = await this.watch!.watch('/api/v1/pods',
        { fieldSelector: this.fieldSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        (type, obj) => this.onEvent(gen, type, obj),
        (err) => this.onWatchEnd(gen, err));
    } catch (e) {
      this.onWatchEnd(gen, e);
      return;
    }
    if (this.stopped || this.endedGeneration === gen || gen !== this.generation) controller.abort();
    else this.controller = controller;
  }

  private onEvent(gen: number, type: string, obj: unknown): void {
    if (this.stopped || gen !== this.generation || this.endedGeneration === gen) return;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        this.upsert(obj as V1Pod);
        break;
      case 'DELETED':
        this.forget(obj as V1Pod);
        break;
      case 'BOOKMARK':
        return;
      case 'ERROR': {
        // A Status object: 410 Gone when our resourceVersion is too old. Either way, start over with a list.
        const s = (obj ?? {}) as { code?: number; reason?: string; message?: string };
        this.log.warn({ code: 'K8S_WATCH_ERROR', status: s.code, reason: s.reason, err: s.message }, 'the pod watch reported an error; re-listing');
        const controller = this.controller;
        this.onWatchEnd(gen, undefined, true); // first, so the abort's own "done" is ignored
        controller?.abort();
        return;
      }
      default:
        this.log.debug({ type }, 'ignoring an unknown watch event type');
        return;
    }
    void this.sync();
  }

  private onWatchEnd(gen: number, err: unknown, reported = false): void {
    if (this.stopped || gen !== this.generation || this.endedGeneration === gen) return;
    this.endedGeneration = gen;
    this.controller = undefined;
    this.watchAgent = undefined;
    if (Date.now() - this.watchStartedAt >= this.maxBackoffMs) this.failures = 0;
    if (err) this.log.warn({ code: 'K8S_WATCH_FAILED', ...describe(err) }, 'the pod watch failed; re-listing');
    else if (!reported) this.log.info('the API server ended the pod watch; re-listing');
    this.scheduleRelist();
  }

  private scheduleRelist(): void {
    if (this.stopped || this.relistTimer) return;
    const backoffMs = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    // Jitter within the upper half, so a node's agents restarted together do not list in step.
    const delayMs = Math.round(backoffMs / 2 + Math.random() * (backoffMs / 2));
    this.log.info({ code: 'K8S_RELIST_SCHEDULED', attempt: this.failures, backoffMs, delayMs }, 're-listing pods after a delay');
    this.relistTimer = setTimeout(() => void this.cycle(), delayMs);
    this.relistTimer.unref();
  }

  // ---- desired state ----

  private replaceAll(pods: V1Pod[]): void {
    this.wanted.clear();
    const present = new Set<string>();
    for (const p of pods) {
      if (p.metadata?.uid) present.add(p.metadata.uid);
      this.upsert(p);
    }
    for (const uid of this.reported.keys()) if (!present.has(uid)) this.reported.delete(uid);
  }

  private upsert(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    const r = podService(pod, { upstreamBindAddress: this.o.upstreamBindAddress });
    if (r instanceof NodemeshError) {
      this.wanted.delete(uid);
      if (this.reported.get(uid) !== r.message) {
        this.reported.set(uid, r.message);
        this.log.error({ code: r.code, pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, uid, resourceVersion: pod.metadata?.resourceVersion }, r.message);
      }
      return;
    }
    this.reported.delete(uid);
    if (r === null) this.wanted.delete(uid);
    else this.wanted.set(uid, { def: r, hash: JSON.stringify(r) });
  }

  private forget(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    this.wanted.delete(uid);
    this.reported.delete(uid);
  }

  // ---- applying it: one change at a time, failures retried with backoff ----

  private sync(): Promise<void> {
    return this.syncer.run();
  }

  private async syncOnce(): Promise<void> {
    let failed = false;
    const wantedIds = new Set([...this.wanted.values()].map((w) => w.def.ID));
    for (const [key, have] of [...this.applied]) {
      if (this.stopped) return;
      const want = this.wanted.get(key);
      if (want && want.def.ID === have.id) continue;
      // Another pod (a StatefulSet pod recreated under its old name, or a pod from an earlier run) claims
      // this ID: its registration replaces this one, with no gap.
      if (wantedIds.has(have.id)) {
        this.applied.delete(key);
        continue;
      }
      try {
        await this.o.deregister(have.id);
        if (this.applied.get(key) === have) this.applied.delete(key);
        this.log.info({ service: have.id, pod: key }, 'pod service deregistered');
      } catch (e) {
        failed = true;
        this.log.warn({ code: 'K8S_DEREGISTER_FAILED', service: have.id, ...describe(e) }, 'could not deregister a pod\'s service; will retry');
      }
    }
    for (const [uid, want] of [...this.wanted]) {
      if (this.stopped) return;
      const have = this.applied.get(uid);
      if (have && have.id === want.def.ID && have.hash === want.hash) continue;
      try {
        await this.o.register(want.def);
        this.applied.set(uid, { id: want.def.ID, hash: want.hash });
        this.log.info({ service: want.def.ID, name: want.def.Name, address: `${want.def.Address}:${want.def.Port}`, pod: uid }, 'pod service registered');
      } catch (e) {
        failed = true;
        this.log.warn({ code: 'K8S_REGISTER_FAILED', service: want.def.ID, ...describe(e) }, 'could not register a pod\'s service; will retry');
      }
    }
    if (failed) this.retryLater();
    else this.retryFailures = 0;
  }

  private retryLater(): void {
    if (this.stopped || this.retryTimer) return;
    const delayMs = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(this.retryFailures, 30));
    this.retryFailures++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.sync();
    }, delayMs);
    this.retryTimer.unref();
  }
}

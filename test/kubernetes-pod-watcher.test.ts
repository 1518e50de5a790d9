// Kubernetes pod registration: this node's annotated, ready pods become services on a real agent, through list, watch, re-list and stop.
//
// The Kubernetes API server here is a mock, because a real API server cannot run here: a small HTTP server
// on 127.0.10.1 that speaks the pods list/watch protocol the way the API server does (a PodList with a
// resourceVersion; `?watch=true` answered with a chunked stream of newline-delimited watch events; Status
// objects for errors). The agent is real (127.0.10.2), and every registration goes through its HTTP API.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { PodWatcher } from '../local/kubernetes/pod-watcher.js';
import type { PodService } from '../local/kubernetes/pod-registrations.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const API_HOST = '127.0.10.1';
const AGENT_BIND = '127.0.10.2';
const NODE = 'node-a';

// ---- the mock API server ----

interface HeldRequest { url: string; closed: boolean }

class MockApiServer {
  readonly requests: string[] = [];
  /** Status codes to answer the next list requests with, in order (then the list). */
  failLists: number[] = [];
  /** Status codes to answer the next watch requests with, in order (then a stream). */
  failWatches: number[] = [];
  /** Leave list (or watch) requests unanswered, as an API server that hangs. */
  holdLists = false;
  holdWatches = false;
  readonly held: HeldRequest[] = [];
  private readonly pods = new Map<string, V1Pod>();
  private readonly watches = new Set<ServerResponse>();
  private rv = 48_211;
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, API_HOST, r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  get url(): string { return `http://${API_HOST}:${this.port}`; }

  async close(): Promise<void> {
    for (const w of this.watches) w.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Puts a pod in the store without telling any watcher (a change made while nobody watched). */
  setQuietly(pod: V1Pod): void {
    pod.metadata!.resourceVersion = String(++this.rv);
    this.pods.set(pod.metadata!.uid!, pod);
  }

  removeQuietly(pod: V1Pod): void {
    this.pods.delete(pod.metadata!.uid!);
    this.rv++;
  }

  /** A change, sent to every open watch as the API server does. */
  emit(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: V1Pod): void {
    if (type === 'DELETED') this.removeQuietly(pod);
    else this.setQuietly(pod);
    pod.metadata!.resourceVersion = String(this.rv);
    this.send({ type, object: pod });
  }

  /** An error event inside the stream: what the API server sends when a watch's resourceVersion is too old. */
  emitGone(): void {
    this.send({
      type: 'ERROR',
      object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: 48211 (${this.rv})`, reason: 'Expired', code: 410 },
    });
  }

  /** Cuts every watch connection (a network failure). */
  dropWatches(): void {
    for (const w of this.watches) w.socket?.destroy();
  }

  /** Ends every watch stream cleanly (the API server's timeoutSeconds). */
  endWatches(): void {
    for (const w of this.watches) w.end();
  }

  get openWatches(): number { return this.watches.size; }

  private send(event: unknown): void {
    for (const w of this.watches) w.write(`${JSON.stringify(event)}\n`);
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(`${req.method} ${req.url}`);
    const url = new URL(req.url ?? '/', this.url);
    if (req.method !== 'GET' || url.pathname !== '/api/v1/pods') return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const selector = url.searchParams.get('fieldSelector') ?? '';
    const m = /^spec\.nodeName=(.+)$/.exec(selector);
    const onNode = (p: V1Pod) => !m || p.spec?.nodeName === m[1];
    const watching = url.searchParams.get('watch') === 'true';
    if ((watching && this.holdWatches) || (!watching && this.holdLists)) {
      const h: HeldRequest = { url: req.url ?? '', closed: false };
      this.held.push(h);
      req.socket.on('close', () => { h.closed = true; });
      return;
    }
    if (watching) {
      const fail = this.failWatches.shift();
      if (fail === 410) return this.status(res, 410, 'Expired', 'too old resource version');
      if (fail) return this.status(res, fail, 'InternalError', 'etcdserver: request timed out');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
      res.flushHeaders();
      this.watches.add(res);
      res.on('close', () => this.watches.delete(res));
      return;
    }
    const fail = this.failLists.shift();
    if (fail) return this.status(res, fail, 'InternalError', 'etcdserver: leader changed');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({
      kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) },
      items: [...this.pods.values()].filter(onNode),
    }));
  }
}

// ---- pods, shaped like what `kubectl get pod -o json` shows ----

let uidSeq = 0x3f1c;

interface PodSpec {
  name: string;
  app: string;
  ip: string;
  namespace?: string;
  node?: string;
  ready?: boolean;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  ports?: { name?: string; containerPort: number }[];
}

function pod(p: PodSpec): V1Pod {
  const n = (uidSeq++).toString(16).padStart(4, '0');
  const uid = `5b0e${n}-1d6e-4c55-9a6b-0c2f7e41${n}`;
  const ready = p.ready ?? true;
  const hash = '7c9d8f6b5';
  const started = '2025-03-14T09:26:53Z';
  const cond = (type: string, status: boolean, reason?: string) => ({
    type, status: status ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: started,
    ...(reason ? { reason, message: 'containers with unready status: [app]' } : {}),
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      generateName: p.name.slice(0, p.name.lastIndexOf('-') + 1),
      namespace: p.namespace ?? 'shop',
      uid,
      resourceVersion: '0',
      creationTimestamp: started as unknown as Date,
      labels: p.labels ?? { 'app.kubernetes.io/name': p.app, 'pod-template-hash': hash },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2025-03-14T09:26:40Z', ...p.annotations },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${p.app}-${hash}`, uid: '0c8b2d47-92a5-4f0e-8d1b-4be2c3f1a9e7', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      containers: [{
        name: 'app',
        image: `registry.example.com/shop/${p.app}:1.14.2`,
        imagePullPolicy: 'IfNotPresent',
        ports: (p.ports ?? [{ name: 'http', containerPort: 8080 }]).map((x) => ({ ...x, protocol: 'TCP' })),
        env: [{ name: 'HOST_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.hostIP' } } }],
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        readinessProbe: { httpGet: { path: '/healthz', port: 'http', scheme: 'HTTP' }, periodSeconds: 5, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
        volumeMounts: [{ name: 'kube-api-access-x7r2m', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
      }],
      dnsPolicy: 'ClusterFirst',
      enableServiceLinks: true,
      nodeName: p.node ?? NODE,
      preemptionPolicy: 'PreemptLowerPriority',
      priority: 0,
      restartPolicy: 'Always',
      schedulerName: 'default-scheduler',
      securityContext: {},
      serviceAccount: 'default',
      serviceAccountName: 'default',
      terminationGracePeriodSeconds: 30,
      tolerations: [
        { effect: 'NoExecute', key: 'node.kubernetes.io/not-ready', operator: 'Exists', tolerationSeconds: 300 },
        { effect: 'NoExecute', key: 'node.kubernetes.io/unreachable', operator: 'Exists', tolerationSeconds: 300 },
      ],
      volumes: [{ name: 'kube-api-access-x7r2m', projected: { defaultMode: 420, sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] } }],
    },
    status: {
      phase: 'Running',
      conditions: [
        cond('PodReadyToStartContainers', true),
        cond('Initialized', true),
        cond('Ready', ready, ready ? undefined : 'ContainersNotReady'),
        cond('ContainersReady', ready, ready ? undefined : 'ContainersNotReady'),
        cond('PodScheduled', true),
      ] as never,
      hostIP: AGENT_BIND,
      hostIPs: [{ ip: AGENT_BIND }],
      podIP: p.ip,
      podIPs: [{ ip: p.ip }],
      qosClass: 'Burstable',
      startTime: started as unknown as Date,
      containerStatuses: [{
        name: 'app', ready, restartCount: 0, started: true,
        image: `registry.example.com/shop/${p.app}:1.14.2`,
        imageID: `registry.example.com/shop/${p.app}@sha256:9f2c4e0b8a7d61c3e5f4a2b19d08c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0`,
        containerID: 'containerd://4be2c3f1a9e70c8b2d4792a54f0e8d1b4be2c3f1a9e70c8b2d4792a54f0e8d1b',
        state: { running: { startedAt: '2025-03-14T09:26:55Z' as unknown as Date } },
        lastState: {},
      }],
    },
  };
}

const mesh = (extra: Record<string, string> = {}) => ({ 'nodemesh.io/inject': 'true', ...extra });

/** A copy of a pod with some changes, as the API server would send it in a MODIFIED event. */
function modified(p: V1Pod, change: (copy: V1Pod) => void): V1Pod {
  const copy = structuredClone(p);
  change(copy);
  return copy;
}

function setReady(p: V1Pod, ready: boolean): V1Pod {
  return modified(p, (c) => {
    for (const k of c.status!.conditions!) {
      if (k.type === 'Ready' || k.type === 'ContainersReady') k.status = ready ? 'True' : 'False';
    }
    c.status!.containerStatuses![0].ready = ready;
  });
}

const idOf = (p: V1Pod, service: string) => `${service}~${p.metadata!.namespace}~${p.metadata!.name}`;

// ---- fixtures ----

interface LogLine { level: number; msg: string; code?: string; [k: string]: unknown }

function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const echo = Boolean(process.env.NODEMESH_TEST_LOG);
  const log = pino({ level: 'debug' }, {
    write(s: string) {
      lines.push(JSON.parse(s) as LogLine);
      if (echo) process.stderr.write(s);
    },
  });
  return { log, lines };
}

function mockKubeConfig(server: MockApiServer): KubeConfig {
  const kc = new KubeConfig();
  // The client refuses plain http unless TLS verification is marked as skipped.
  kc.loadFromOptions({
    clusters: [{ name: 'mock', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'c', cluster: 'mock', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}

interface Rig {
  api: MockApiServer;
  agent: TestAgent;
  watcher: PodWatcher;
  lines: LogLine[];
  services(): Promise<Record<string, { ID: string; Service: string; Port: number; Address: string; Meta: Record<string, string>; Kind?: string; Proxy?: { DestinationServiceID?: string; LocalServiceAddress?: string; LocalServicePort?: number; Upstreams?: { DestinationName: string; LocalBindAddress?: string; LocalBindPort: number }[] } }>>;
  close(): Promise<void>;
}

/** Hooks that register and deregister through the agent's HTTP API, so its real validator judges every definition. */
function httpHooks(agent: TestAgent) {
  return {
    register: async (def: PodService) => {
      const res = await agent.api('/v1/agent/service/register', put(def));
      if (res.status !== 200) throw new Error(`register ${def.ID}: HTTP ${res.status}: ${await res.text()}`);
    },
    deregister: async (id: string) => {
      const res = await agent.api(`/v1/agent/service/deregister/${encodeURIComponent(id)}`, put());
      if (res.status !== 200) throw new Error(`deregister ${id}: HTTP ${res.status}: ${await res.text()}`);
    },
  };
}

async function rig(pods: V1Pod[], opts: { previous?: string[]; before?: (agent: TestAgent) => Promise<void> } = {}): Promise<Rig> {
  const api = new MockApiServer();
  await api.start();
  for (const p of pods) api.setQuietly(p);
  const agent = await startTestAgent({ node: NODE, bind: AGENT_BIND }).catch(async (e: unknown) => {
    await api.close();
    throw e;
  });
  try {
    await opts.before?.(agent);
  } catch (e) {
    await agent.stop();
    await api.close();
    throw e;
  }
  const { log, lines } = captureLog();
  const watcher = new PodWatcher({
    kubeConfig: mockKubeConfig(api), nodeName: NODE, log, ...httpHooks(agent),
    previous: opts.previous ? () => opts.previous! : undefined,
    initialBackoffMs: 20, maxBackoffMs: 160, watchTimeoutSeconds: 600,
  });
  watcher.start();
  return {
    api, agent: agent, watcher, lines,
    services: async () => {
      const res = await agent.api('/v1/agent/services');
      assert.equal(res.status, 200);
      return await res.json() as Awaited<ReturnType<Rig['services']>>;
    },
    close: async () => {
      await watcher.stop();
      await agent.stop();
      await api.close();
    },
  };
}

/**
 * Waits until the agent's services are exactly `ids` (sidecars included). Generous, since a loaded CI machine runs two
 * suites' agents at once; a miss names the watcher's last log lines, so the reason is in the failure itself.
 */
async function expectServices(r: Rig, ids: string[]): Promise<Awaited<ReturnType<Rig['services']>>> {
  try {
    return await waitFor(async () => {
      const s = await r.services();
      assert.deepEqual(Object.keys(s).sort(), [...ids].sort());
      return s;
    }, 30_000);
  } catch (e) {
    const tail = r.lines.slice(-12).map((l) => JSON.stringify(l)).join('\n  ');
    throw new Error(`${(e as Error).message}\nthe watcher's last log lines:\n  ${tail}`, { cause: e });
  }
}

const withSidecars = (...ids: string[]) => ids.flatMap((id) => [id, `${id}-sidecar-proxy`]);
const logged = (lines: LogLine[], code: string) => lines.filter((l) => l.code === code);

// ---- tests ----

test('the initial list registers exactly the ready, annotated pods of this node, with name, port, address and upstreams', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh({ 'nodemesh.io/upstreams': 'db:9191, cache:9192' }) });
  const api = pod({ name: 'api-7c9d8f6b5-q8w4z', app: 'api', ip: '127.0.10.12', ready: false, annotations: mesh({ 'nodemesh.io/service': 'orders-api', 'nodemesh.io/port': '9000' }) });
  const plain = pod({ name: 'metrics-7c9d8f6b5-m2n7p', app: 'metrics', ip: '127.0.10.13' });
  const elsewhere = pod({ name: 'web-7c9d8f6b5-r5t6y', app: 'web', ip: '127.0.10.14', node: 'node-b', annotations: mesh() });
  const r = await rig([web, api, plain, elsewhere]);
  try {
    const id = idOf(web, 'web');
    const s = await expectServices(r, withSidecars(id));
    assert.equal(s[id].Service, 'web');
    assert.equal(s[id].Port, 8080);
    assert.equal(s[id].Address, '127.0.10.11');
    assert.deepEqual(s[id].Meta, { 'k8s-namespace': 'shop', 'k8s-pod': 'web-7c9d8f6b5-x2x9k', 'k8s-pod-uid': web.metadata!.uid });
    const sidecar = s[`${id}-sidecar-proxy`];
    assert.equal(sidecar.Kind, 'connect-proxy');
    assert.equal(sidecar.Proxy?.DestinationServiceID, id);
    assert.equal(sidecar.Proxy?.LocalServiceAddress, '127.0.10.11');
    assert.equal(sidecar.Proxy?.LocalServicePort, 8080);
    assert.deepEqual(sidecar.Proxy?.Upstreams?.map((u) => [u.DestinationName, u.LocalBindAddress, u.LocalBindPort]), [
      ['db', AGENT_BIND, 9191],
      ['cache', AGENT_BIND, 9192],
    ]);
    // The watcher records a registration once the agent's register call returns, a moment after the services appear.
    await waitFor(() => assert.deepEqual([...r.watcher.registrations()], [[web.metadata!.uid, id]]));

    // The pod reaches its upstreams on its node's address ($HOST_IP): the agent listens there.
    await waitFor(() => new Promise<void>((resolve, reject) => {
      const c = connect({ host: AGENT_BIND, port: 9191, localAddress: '127.0.10.11' }, () => { c.destroy(); resolve(); });
      c.on('error', reject);
    }));

    // One list of this node's pods, then a watch from the list's resourceVersion.
    const list = r.api.requests.find((u) => !u.includes('watch=true'));
    assert.ok(list?.startsWith('GET /api/v1/pods?'), list);
    assert.match(list!, /fieldSelector=spec\.nodeName%3Dnode-a/);
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    const watch = r.api.requests.find((u) => u.includes('watch=true'))!;
    assert.match(watch, /fieldSelector=spec\.nodeName%3Dnode-a/);
    assert.match(watch, /resourceVersion=\d+/);
  } finally {
    await r.close();
  }
});

test('watch events: becoming ready registers, becoming unready or deleted deregisters', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const api = pod({ name: 'api-7c9d8f6b5-q8w4z', app: 'api', ip: '127.0.10.12', ready: false, annotations: mesh({ 'nodemesh.io/port': 'http' }), ports: [{ name: 'metrics', containerPort: 9102 }, { name: 'http', containerPort: 9000 }] });
  const r = await rig([web, api]);
  const webId = idOf(web, 'web');
  const apiId = idOf(api, 'api');
  try {
    await expectServices(r, withSidecars(webId));
    await waitFor(() => assert.equal(r.api.openWatches, 1));

    r.api.emit('MODIFIED', setReady(api, true));
    const s = await expectServices(r, withSidecars(webId, apiId));
    assert.equal(s[apiId].Port, 9000, 'the named port "http" resolves to its containerPort');

    r.api.emit('MODIFIED', setReady(web, false));
    await expectServices(r, withSidecars(apiId));

    // A pod being deleted is out at once (deletionTimestamp), before its DELETED event.
    r.api.emit('MODIFIED', modified(setReady(web, true), (c) => { c.metadata!.deletionTimestamp = '2025-03-14T10:02:11Z' as unknown as Date; }));
    r.api.emit('DELETED', api);
    await expectServices(r, []);
    assert.equal(r.watcher.registrations().size, 0);
  } finally {
    await r.close();
  }
});

test('after a broken watch it re-lists with growing backoff and reconciles what changed meanwhile', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const api = pod({ name: 'api-7c9d8f6b5-q8w4z', app: 'api', ip: '127.0.10.12', annotations: mesh() });
  const r = await rig([web, api]);
  try {
    await expectServices(r, withSidecars(idOf(web, 'web'), idOf(api, 'api')));
    await waitFor(() => assert.equal(r.api.openWatches, 1));

    // While nobody watches: api goes away, worker arrives; and the next two lists fail.
    const worker = pod({ name: 'worker-5f6c7d8e9-k3j4h', app: 'worker', ip: '127.0.10.15', annotations: mesh() });
    r.api.removeQuietly(api);
    r.api.setQuietly(worker);
    r.api.failLists = [500, 503];
    r.api.dropWatches();

    await expectServices(r, withSidecars(idOf(web, 'web'), idOf(worker, 'worker')));
    // A cut connection reads as an error or as an end, depending on which the client sees first; either is one re-list.
    assert.equal(r.lines.filter((l) => l.code === 'K8S_WATCH_FAILED' || /ended the pod watch/.test(l.msg)).length, 1);
    assert.deepEqual(logged(r.lines, 'K8S_LIST_FAILED').map((l) => l.status), [500, 503]);
    // 20 ms, then doubled per failure in a row; each delay jittered within the upper half.
    const relists = logged(r.lines, 'K8S_RELIST_SCHEDULED');
    assert.deepEqual(relists.map((l) => l.backoffMs), [20, 40, 80]);
    for (const l of relists) assert.ok((l.delayMs as number) >= (l.backoffMs as number) / 2 && (l.delayMs as number) <= (l.backoffMs as number));
    await waitFor(() => assert.equal(r.api.openWatches, 1));

    // The backoff is capped.
    r.api.failLists = [500, 500, 500, 500, 500];
    r.api.endWatches();
    await waitFor(() => assert.equal(logged(r.lines, 'K8S_LIST_FAILED').length, 7));
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    assert.ok(logged(r.lines, 'K8S_RELIST_SCHEDULED').every((l) => (l.backoffMs as number) <= 160));
    assert.equal(logged(r.lines, 'K8S_RELIST_SCHEDULED').at(-1)!.backoffMs, 160);
  } finally {
    await r.close();
  }
});

test('410 Gone, as a watch ERROR event or as the watch response, and a cleanly ended stream all lead to a re-list', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const r = await rig([web]);
  try {
    await expectServices(r, withSidecars(idOf(web, 'web')));
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    const lists = () => r.api.requests.filter((u) => !u.includes('watch=true')).length;
    assert.equal(lists(), 1);

    const cache = pod({ name: 'cache-6d7e8f9a0-p9o8i', app: 'cache', ip: '127.0.10.16', annotations: mesh() });
    r.api.setQuietly(cache);
    r.api.failWatches = [410];
    r.api.emitGone();
    await expectServices(r, withSidecars(idOf(web, 'web'), idOf(cache, 'cache')));
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    assert.equal(logged(r.lines, 'K8S_WATCH_ERROR')[0]?.status, 410);
    assert.equal(logged(r.lines, 'K8S_WATCH_FAILED')[0]?.status, 410);
    assert.equal(lists(), 3);

    r.api.removeQuietly(web);
    r.api.endWatches();
    await expectServices(r, withSidecars(idOf(cache, 'cache')));
    assert.equal(lists(), 4);
  } finally {
    await r.close();
  }
});

test('malformed annotations: not registered, logged once with a stable code, and the watcher keeps going', async () => {
  const badPort = pod({ name: 'billing-6b7c8d9e0-a1s2d', app: 'billing', ip: '127.0.10.21', annotations: mesh({ 'nodemesh.io/port': '99999' }) });
  const badSyntax = pod({ name: 'search-6b7c8d9e0-f3g4h', app: 'search', ip: '127.0.10.22', annotations: mesh({ 'nodemesh.io/upstreams': 'db:9191,cache' }) });
  const dupPorts = pod({ name: 'cart-6b7c8d9e0-j5k6l', app: 'cart', ip: '127.0.10.23', annotations: mesh({ 'nodemesh.io/upstreams': 'db:9191,cache:9191' }) });
  const good = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const r = await rig([badPort, badSyntax, dupPorts, good]);
  try {
    await expectServices(r, withSidecars(idOf(good, 'web')));
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    const invalid = () => logged(r.lines, 'K8S_POD_ANNOTATION_INVALID');
    await waitFor(() => assert.equal(invalid().length, 3));
    const byPod = new Map(invalid().map((l) => [l.pod, l.msg]));
    assert.match(byPod.get('shop/billing-6b7c8d9e0-a1s2d')!, /nodemesh\.io\/port "99999" is neither a port/);
    assert.match(byPod.get('shop/search-6b7c8d9e0-f3g4h')!, /nodemesh\.io\/upstreams entry "cache" is not <service>:<port>/);
    assert.match(byPod.get('shop/cart-6b7c8d9e0-j5k6l')!, /port 9191 is used twice/);
    for (const l of invalid()) assert.equal(l.level, 50, 'logged as an error');

    // A status update (new resourceVersion, same problem) and a re-list do not repeat the report.
    r.api.emit('MODIFIED', modified(badPort, (c) => { c.status!.containerStatuses![0].restartCount = 1; }));
    r.api.dropWatches();
    await waitFor(() => assert.equal(r.api.openWatches, 1));
    const late = pod({ name: 'ledger-6b7c8d9e0-z7x8c', app: 'ledger', ip: '127.0.10.24', annotations: mesh() });
    r.api.emit('ADDED', late);
    await expectServices(r, withSidecars(idOf(good, 'web'), idOf(late, 'ledger')));
    assert.equal(invalid().length, 3);

    // Fixing the annotation registers the pod.
    r.api.emit('MODIFIED', modified(badPort, (c) => { c.metadata!.annotations!['nodemesh.io/port'] = '8080'; }));
    await expectServices(r, withSidecars(idOf(good, 'web'), idOf(late, 'ledger'), idOf(badPort, 'billing')));
  } finally {
    await r.close();
  }
});

test('registrations from an earlier run are adopted: kept while their pod runs, removed when it is gone', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const goneId = 'api~shop~api-7c9d8f6b5-gone1';
  const r = await rig([web], {
    previous: [idOf(web, 'web'), goneId],
    before: async (agent) => {
      const hooks = httpHooks(agent);
      await hooks.register({ ID: goneId, Name: 'api', Address: '127.0.10.19', Port: 9000, Meta: { 'k8s-pod-uid': 'old' }, Connect: { SidecarService: {} } });
      await hooks.register({ ID: idOf(web, 'web'), Name: 'web', Address: '127.0.10.11', Port: 8080, Meta: { 'k8s-pod-uid': web.metadata!.uid! }, Connect: { SidecarService: {} } });
    },
  });
  try {
    await expectServices(r, withSidecars(idOf(web, 'web')));
    assert.ok(!logged(r.lines, 'K8S_DEREGISTER_FAILED').length);
    assert.ok(r.lines.some((l) => l.msg === 'pod service deregistered' && l.service === goneId));
    assert.ok(!r.lines.some((l) => l.msg === 'pod service deregistered' && l.service === idOf(web, 'web')), 'a running pod keeps its registration, with no gap');
  } finally {
    await r.close();
  }
});

test('a failing register hook is retried later', async () => {
  const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
  const api = new MockApiServer();
  await api.start();
  api.setQuietly(web);
  const { log, lines } = captureLog();
  const registered: string[] = [];
  let failures = 2;
  const watcher = new PodWatcher({
    kubeConfig: mockKubeConfig(api), nodeName: NODE, log, initialBackoffMs: 20, maxBackoffMs: 160,
    register: async (def) => {
      if (failures-- > 0) throw new Error('agent busy');
      registered.push(def.ID);
    },
    deregister: async () => undefined,
  });
  try {
    watcher.start();
    await waitFor(() => assert.deepEqual(registered, [idOf(web, 'web')]));
    assert.equal(logged(lines, 'K8S_REGISTER_FAILED').length, 2);
  } finally {
    await watcher.stop();
    await api.close();
  }
});

test('stop() aborts a list or watch request still waiting for an answer, and clears its timers', async () => {
  for (const hold of ['holdLists', 'holdWatches'] as const) {
    const api = new MockApiServer();
    await api.start();
    api[hold] = true;
    const { log } = captureLog();
    const watcher = new PodWatcher({ kubeConfig: mockKubeConfig(api), nodeName: NODE, log, register: async () => undefined, deregister: async () => undefined });
    watcher.start();
    await waitFor(() => assert.equal(api.held.length, 1));
    await watcher.stop();
    await waitFor(() => assert.ok(api.held[0].closed, `${hold}: the held request's connection was closed by the client`));
    await api.close();
  }
  // A watcher waiting to re-list (API server down) stops at once too: its timer is cleared.
  const api = new MockApiServer();
  await api.start();
  api.failLists = [500];
  const { log, lines } = captureLog();
  const watcher = new PodWatcher({ kubeConfig: mockKubeConfig(api), nodeName: NODE, log, initialBackoffMs: 60_000, register: async () => undefined, deregister: async () => undefined });
  watcher.start();
  await waitFor(() => assert.equal(logged(lines, 'K8S_RELIST_SCHEDULED').length, 1));
  await watcher.stop();
  await api.close();
});

test('fromEnvironment: no in-cluster config and no kubeconfig → undefined; a kubeconfig and NODE_NAME → a working watcher', async () => {
  const saved = { ...process.env };
  const home = tempDir('nodemesh-k8s-home-');
  const api = new MockApiServer();
  await api.start();
  const { log, lines } = captureLog();
  try {
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    process.env.HOME = home;
    process.env.KUBECONFIG = join(home, 'missing', 'config');
    process.env.NODE_NAME = NODE;
    const hooks = { register: async () => undefined, deregister: async () => undefined };
    assert.equal(await PodWatcher.fromEnvironment(log, hooks), undefined);
    delete process.env.KUBECONFIG;
    assert.equal(await PodWatcher.fromEnvironment(log, hooks), undefined);

    // ~/.kube/config is found, but without NODE_NAME the source stays off, and says why.
    mkdirSync(join(home, '.kube'));
    writeFileSync(join(home, '.kube', 'config'), [
      'apiVersion: v1', 'kind: Config', 'current-context: mock',
      'clusters:', `- name: mock`, '  cluster:', `    server: ${api.url}`, '    insecure-skip-tls-verify: true',
      'users:', '- name: dev', '  user: {}',
      'contexts:', '- name: mock', '  context:', '    cluster: mock', '    user: dev',
    ].join('\n'));
    delete process.env.NODE_NAME;
    assert.equal(await PodWatcher.fromEnvironment(log, hooks), undefined);
    assert.ok(lines.some((l) => /NODE_NAME is not set/.test(l.msg)));

    process.env.NODE_NAME = NODE;
    const web = pod({ name: 'web-7c9d8f6b5-x2x9k', app: 'web', ip: '127.0.10.11', annotations: mesh() });
    api.setQuietly(web);
    const registered: string[] = [];
    const watcher = await PodWatcher.fromEnvironment(log, { register: async (d) => { registered.push(d.ID); }, deregister: async () => undefined });
    assert.ok(watcher);
    watcher.start();
    try {
      await waitFor(() => assert.deepEqual(registered, [idOf(web, 'web')]));
    } finally {
      await watcher.stop();
    }
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await api.close();
  }
});

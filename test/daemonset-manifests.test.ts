// The Kubernetes manifests in daemonset/: they parse, kustomize lists them, and the DaemonSet, RBAC, Service and ConfigMap hold what a node agent needs, checked against real agents.
//
// No cluster runs here, so what Kubernetes would do is checked against the agent itself: the probes'
// paths are requested from a real agent (127.0.9.1), the ConfigMap goes through the agent's config loader,
// and the DaemonSet's own args, env and volume layout (ConfigMap, a Secret made with `nodemesh ca init` and
// `nodemesh keygen`) start the real CLI (127.0.9.2), as the kubelet would start the container.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import type {
  V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1Container, V1DaemonSet, V1EnvVar, V1KeyToPath, V1Probe, V1Secret,
  V1SecurityContext, V1Service, V1ServiceAccount,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { defaultConfig, isLoopback } from '../config/agent-config.js';
import { loadConfig } from '../config/config-load.js';
import { ROOT, runCli, spawnAgent, startTestAgent, tempDir } from './helpers/agent-process.js';

const DIR = join(ROOT, 'daemonset');
const SECRET_TEMPLATE = 'secret-template.yaml';

interface Manifest { file: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown }

/** Every document of every YAML file in daemonset/, parse errors collected rather than thrown. */
function loadManifests(): { files: string[]; docs: Manifest[]; errors: string[] } {
  const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
  const docs: Manifest[] = [];
  const errors: string[] = [];
  for (const file of files) {
    // YAML 1.1, as Kubernetes reads manifests: `defaultMode: 0440` is octal there (and decimal 440 in YAML 1.2).
    for (const doc of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'), { version: '1.1' })) {
      for (const e of [...doc.errors, ...doc.warnings]) errors.push(`${file}: ${e.message}`);
      const obj = doc.toJS() as Manifest | null;
      if (obj !== null) docs.push({ ...obj, file });
    }
  }
  return { files, docs, errors };
}

const { files, docs, errors } = loadManifests();
const one = <T>(kind: string, file?: string): T => {
  const found = docs.filter((d) => d.kind === kind && (file === undefined || d.file === file));
  assert.equal(found.length, 1, `exactly one ${kind}${file ? ` in ${file}` : ''} (found ${found.length})`);
  return found[0] as unknown as T;
};
const ds = () => one<V1DaemonSet>('DaemonSet');
const podSpec = () => ds().spec!.template.spec!;
const agentContainer = (): V1Container => {
  const c = podSpec().containers.find((x) => x.name === 'agent');
  assert.ok(c, 'a container named agent');
  return c;
};
const configMap = () => one<V1ConfigMap>('ConfigMap');
const secret = () => one<V1Secret>('Secret', SECRET_TEMPLATE);
const agentJson = (): Record<string, unknown> => JSON.parse(configMap().data!['agent.json']) as Record<string, unknown>;

/** Where a probe sends its request, whether kubelet does it (httpGet) or a command in the container does (exec). */
function probeTarget(probe: V1Probe | undefined, what: string): { host: string; port: number; path: string } {
  assert.ok(probe, `${what} is set`);
  if (probe.httpGet) {
    return { host: probe.httpGet.host ?? '(pod IP)', port: Number(probe.httpGet.port), path: probe.httpGet.path ?? '/' };
  }
  const cmd = (probe.exec?.command ?? []).join(' ');
  const m = /https?:\/\/([^/:'"\s]+):(\d+)(\/[^'"\s)?]*)/.exec(cmd);
  assert.ok(m, `${what}: an httpGet probe, or an exec probe fetching a URL (got ${JSON.stringify(probe)})`);
  return { host: m[1], port: Number(m[2]), path: m[3] };
}

/** The kubelet's $(VAR) expansion of args from the container's env (unknown references stay as they are). */
const expand = (s: string, env: Record<string, string>) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, v: string) => env[v] ?? all);

/** Container-level security settings win over the pod's, as in Kubernetes. */
const effective = (c: V1Container): V1SecurityContext & { runAsNonRoot?: boolean } => ({
  runAsNonRoot: podSpec().securityContext?.runAsNonRoot,
  runAsUser: podSpec().securityContext?.runAsUser,
  seccompProfile: podSpec().securityContext?.seccompProfile,
  ...Object.fromEntries(Object.entries(c.securityContext ?? {}).filter(([, v]) => v !== undefined)),
});

test('every YAML file in daemonset/ parses, each document is a named Kubernetes object, each file says what it owns', () => {
  assert.deepEqual(errors, []);
  assert.ok(files.length >= 8, `manifests found: ${files.join(', ')}`);
  for (const f of files) assert.match(readFileSync(join(DIR, f), 'utf8'), /^# \S.*\n/, `${f} starts with a one-line comment`);
  for (const d of docs) {
    assert.equal(typeof d.kind, 'string', `${d.file}: kind`);
    if (d.kind !== 'Kustomization') assert.equal(typeof d.metadata?.name, 'string', `${d.file}: metadata.name`);
  }
  for (const d of docs.filter((x) => !['Kustomization', 'Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(x.kind))) {
    assert.equal(d.metadata.namespace, 'nodemesh', `${d.file} ${d.kind} is in namespace nodemesh`);
  }
});

test('every object validates against the Kubernetes API schemas (kubernetes-models): required fields present, every value of the right type', async () => {
  const objects = docs.filter((d) => d.kind !== 'Kustomization');
  assert.ok(objects.length >= 7);
  for (const d of objects) {
    const { file, ...obj } = d;
    const apiVersion = String(obj.apiVersion);
    // `v1` is the core group; `apps/v1`, `rbac.authorization.k8s.io/v1` are modules of the same names.
    const mod = await import(`kubernetes-models/${apiVersion}`) as Record<string, new (o: unknown) => { validate(): void }>;
    const Kind = mod[d.kind];
    assert.ok(Kind, `${file}: ${apiVersion} ${d.kind} is a known Kubernetes kind`);
    assert.doesNotThrow(() => new Kind(obj).validate(), `${file}: ${d.kind} ${d.metadata.name} matches the schema`);
  }
  // The check has teeth: a wrong type is caught. (The schemas allow unknown fields, so a misspelling is not.)
  const { DaemonSet } = await import('kubernetes-models/apps/v1');
  const { file: _f, ...good } = ds() as unknown as Manifest;
  const bad = structuredClone(good) as any;
  bad.spec.template.spec.hostNetwork = 'yes';
  assert.throws(() => new DaemonSet(bad).validate());
});

test('kustomization.yaml lists every manifest but the Secret template, only existing files, namespace nodemesh, and the image', () => {
  const k = one<{ namespace: string; resources: string[]; images: { name: string; newName?: string; newTag?: string }[] }>('Kustomization');
  assert.equal(k.namespace, 'nodemesh');
  for (const r of k.resources) assert.ok(existsSync(join(DIR, r)), `listed resource ${r} exists`);
  assert.equal(new Set(k.resources).size, k.resources.length, 'no resource listed twice');
  const expected = files.filter((f) => f !== 'kustomization.yaml' && f !== SECRET_TEMPLATE);
  assert.deepEqual([...k.resources].sort(), expected);
  // Applying the template would overwrite the real Secret with placeholders on every `kubectl apply -k`.
  assert.ok(!k.resources.includes(SECRET_TEMPLATE), 'the Secret template is not applied by kustomize');
  const images = [...podSpec().containers, ...(podSpec().initContainers ?? [])].map((c) => c.image);
  for (const img of images) assert.ok(k.images.some((i) => i.name === img), `kustomization images[] rewrites ${img}`);
});

test('DaemonSet: host network with cluster DNS, node name and host IP from the downward API, every $(VAR) defined', () => {
  const spec = podSpec();
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
  const env = new Map((agentContainer().env ?? []).map((e: V1EnvVar) => [e.name, e]));
  assert.equal(env.get('NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  assert.equal(env.get('HOST_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.hostIP');
  const token = env.get('NODEMESH_ACL_TOKEN')?.valueFrom?.secretKeyRef;
  assert.equal(token?.name, secret().metadata!.name);
  assert.ok(token?.key && token.key in (secret().stringData ?? {}), `the ACL token key ${token?.key} is in the Secret template`);
  const args = agentContainer().args ?? [];
  assert.equal(args[0], 'agent', 'the image entrypoint is the nodemesh CLI: args start with the subcommand');
  assert.ok(args.includes('--node=$(NODE_NAME)'), 'node name from NODE_NAME');
  assert.ok(args.includes('--bind=$(HOST_IP)'), 'gossip and public listeners on the host IP');
  // Kubernetes leaves an undefined $(VAR) as literal text, which the agent would then take as a value.
  for (const a of [...args, ...(agentContainer().command ?? [])]) {
    for (const [, v] of a.matchAll(/\$\(([^)]*)\)/g)) assert.ok(env.has(v), `$(${v}) in ${a} is defined in env`);
  }
  assert.equal(ds().spec!.selector.matchLabels!['app.kubernetes.io/name'], ds().spec!.template.metadata!.labels!['app.kubernetes.io/name']);
  assert.ok(spec.tolerations?.some((t) => t.operator === 'Exists' && !t.key && !t.effect), 'tolerates every taint: an agent on every node');
  assert.equal(spec.serviceAccountName, one<V1ServiceAccount>('ServiceAccount').metadata!.name);
});

test('DaemonSet: metrics on a read-only listener at the node IP, with scrape annotations and a PodMonitor that name its port', () => {
  const args = agentContainer().args ?? [];
  const port = Number(args.find((a) => a.startsWith('--metrics-port='))?.split('=')[1]);
  assert.ok(port > 1024, 'a metrics port (unprivileged)');
  assert.ok(args.includes('--metrics-addr=$(HOST_IP)'), 'bound to the node IP, where Prometheus reaches a hostNetwork pod');
  assert.ok(!args.some((a) => a.startsWith('--client=')), 'the API itself stays on 127.0.0.1');
  const named = (agentContainer().ports ?? []).find((p) => p.name === 'metrics');
  assert.equal(named?.containerPort, port, 'the container port named metrics is that port');
  const ann = ds().spec!.template.metadata!.annotations ?? {};
  assert.deepEqual([ann['prometheus.io/scrape'], ann['prometheus.io/port'], ann['prometheus.io/path']], ['true', String(port), '/metrics']);
  const monitorDir = join(DIR, 'monitoring');
  const pm = parseAllDocuments(readFileSync(join(monitorDir, 'pod-monitor.yaml'), 'utf8'))[0].toJS() as { kind: string; spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string }[] } };
  assert.equal(pm.kind, 'PodMonitor');
  assert.deepEqual(pm.spec.podMetricsEndpoints.map((e) => [e.port, e.path]), [['metrics', '/metrics']]);
  for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(ds().spec!.template.metadata!.labels![k], v, `PodMonitor selects the agents by ${k}`);
  const kust = parseAllDocuments(readFileSync(join(monitorDir, 'kustomization.yaml'), 'utf8'))[0].toJS() as { resources: string[] };
  assert.deepEqual(kust.resources, ['../', 'pod-monitor.yaml']);
});

test('DaemonSet: rolling update one node at a time, a grace period for a clean leave, resources on every container', () => {
  const u = ds().spec!.updateStrategy!;
  assert.equal(u.type, 'RollingUpdate');
  assert.equal(u.rollingUpdate?.maxUnavailable, 1);
  // Surge would run two agents on one node, both wanting the host's ports.
  assert.ok(u.rollingUpdate?.maxSurge === undefined || u.rollingUpdate.maxSurge === 0, 'no surge');
  assert.ok((podSpec().terminationGracePeriodSeconds ?? 30) >= 30, 'terminationGracePeriodSeconds >= 30');
  for (const c of [...podSpec().containers, ...(podSpec().initContainers ?? [])]) {
    for (const r of ['cpu', 'memory']) {
      assert.ok(c.resources?.requests?.[r], `${c.name}: requests.${r}`);
      assert.ok(c.resources?.limits?.[r], `${c.name}: limits.${r}`);
    }
  }
});

test('DaemonSet: the agent runs non-root (the image\'s uid), without privilege escalation or capabilities, on a read-only root', () => {
  const sc = effective(agentContainer());
  assert.equal(sc.runAsNonRoot, true);
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.deepEqual(sc.capabilities?.drop, ['ALL']);
  assert.equal(sc.capabilities?.add, undefined, 'no capability added back');
  assert.equal(sc.seccompProfile?.type, 'RuntimeDefault');
  const user = /^USER\s+(\d+)/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  assert.ok(user, 'the Dockerfile sets a numeric USER');
  assert.equal(sc.runAsUser, Number(user[1]), 'runAsUser is the image\'s user');
  // Without NET_BIND_SERVICE the agent can only bind ports >= 1024.
  for (const p of agentContainer().ports ?? []) assert.ok(p.containerPort >= 1024, `port ${p.containerPort} >= 1024`);
  // The one root step (owning the hostPath data dir) may chown and nothing else.
  for (const c of podSpec().initContainers ?? []) {
    const isc = effective(c);
    assert.equal(isc.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation false`);
    assert.equal(isc.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
    assert.deepEqual(isc.capabilities?.drop, ['ALL'], `${c.name}: drops ALL`);
    for (const cap of isc.capabilities?.add ?? []) assert.equal(cap, 'CHOWN', `${c.name}: adds back at most CHOWN`);
  }
});

test('DaemonSet: data dir on a hostPath, config from the ConfigMap, CA material from the Secret, not world-readable', () => {
  const volumes = new Map((podSpec().volumes ?? []).map((v) => [v.name, v]));
  for (const c of [...podSpec().containers, ...(podSpec().initContainers ?? [])]) {
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts ${m.name}, which is a volume`);
  }
  const mounts = new Map((agentContainer().volumeMounts ?? []).map((m) => [m.mountPath, m]));
  const dataDir = /^--data-dir=(.+)$/.exec((agentContainer().args ?? []).find((a) => a.startsWith('--data-dir=')) ?? '')?.[1];
  assert.equal(dataDir, '/var/lib/nodemesh');
  const data = volumes.get(mounts.get(dataDir)?.name ?? '');
  assert.deepEqual(data?.hostPath, { path: '/var/lib/nodemesh', type: 'DirectoryOrCreate' });
  assert.equal(agentJson().data_dir, dataDir, 'the ConfigMap names the same data dir');
  const configDirs = (agentContainer().args ?? []).filter((a) => a.startsWith('--config-dir=')).map((a) => a.slice('--config-dir='.length));
  const cmVolume = [...volumes.values()].find((v) => v.configMap);
  assert.ok(cmVolume?.configMap, 'a ConfigMap volume');
  assert.equal(cmVolume.configMap.name, configMap().metadata!.name);
  assert.ok(configDirs.some((d) => mounts.get(d)?.name === cmVolume.name), 'a --config-dir is the ConfigMap mount');
  const sVolume = [...volumes.values()].find((v) => v.secret);
  assert.ok(sVolume?.secret, 'a Secret volume');
  assert.equal(sVolume.secret.secretName, secret().metadata!.name);
  const mode = sVolume.secret.defaultMode ?? 0o644;
  assert.ok(mode === 0o400 || mode === 0o440, `secret files are 0400 or 0440 (defaultMode ${mode.toString(8)})`);
  for (const item of sVolume.secret.items ?? []) {
    assert.ok(item.key in (secret().stringData ?? {}), `secret item ${item.key} is in the Secret template`);
    assert.equal((item.mode ?? mode) & 0o007, 0, `${item.key} is not world-readable`);
  }
  // The CA key is readable by the agent's group (fsGroup) and by nobody else.
  assert.equal(podSpec().securityContext?.fsGroup, effective(agentContainer()).runAsUser);
  for (const m of agentContainer().volumeMounts ?? []) {
    const v = volumes.get(m.name)!;
    if (v.configMap || v.secret) assert.equal(m.readOnly, true, `${m.mountPath} is mounted read-only`);
  }
});

test('RBAC: exactly get/list/watch on pods and get on nodes, bound to the agents\' ServiceAccount', () => {
  const role = one<V1ClusterRole>('ClusterRole');
  const rules = (role.rules ?? []).map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: [...r.verbs].sort(), resourceNames: r.resourceNames, nonResourceURLs: r.nonResourceURLs }));
  assert.deepEqual(rules, [
    { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'], resourceNames: undefined, nonResourceURLs: undefined },
    { apiGroups: [''], resources: ['nodes'], verbs: ['get'], resourceNames: undefined, nonResourceURLs: undefined },
  ]);
  const all = JSON.stringify(docs.filter((d) => d.kind.startsWith('ClusterRole') || d.kind.startsWith('Role')));
  assert.doesNotMatch(all, /"\*"/, 'no wildcard');
  assert.doesNotMatch(all, /"(create|update|patch|delete|deletecollection|escalate|bind|impersonate)"/, 'no write verbs');
  const binding = one<V1ClusterRoleBinding>('ClusterRoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name });
  const sa = one<V1ServiceAccount>('ServiceAccount');
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata!.name, namespace: sa.metadata!.namespace }]);
});

test('headless Service: selects the agents, gossip port 8301, lists agents before they are ready; retry_join names it', () => {
  const svc = one<V1Service>('Service');
  assert.equal(svc.spec!.clusterIP, 'None');
  // Readiness may wait for the pool, and a new agent finds the pool through this name: listing only
  // ready agents would leave the first agents of a cluster waiting for each other.
  assert.equal(svc.spec!.publishNotReadyAddresses, true);
  const labels = ds().spec!.template.metadata!.labels!;
  for (const [k, v] of Object.entries(svc.spec!.selector ?? {})) assert.equal(labels[k], v, `selector ${k}=${v} matches the pods`);
  assert.ok(Object.keys(svc.spec!.selector ?? {}).length > 0);
  for (const protocol of ['TCP', 'UDP']) assert.ok(svc.spec!.ports!.some((p) => p.port === 8301 && (p.protocol ?? 'TCP') === protocol), `8301/${protocol}`);
  const dns = `${svc.metadata!.name}.${svc.metadata!.namespace}.svc.cluster.local`;
  const retryJoin = agentJson().retry_join as string[];
  assert.ok(retryJoin.some((a) => a === dns || a === `${dns}:8301`), `retry_join ${JSON.stringify(retryJoin)} names ${dns}`);
});

test('the ConfigMap\'s agent.json passes the agent\'s real config loader, with the DaemonSet\'s flags', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'agent.json'), configMap().data!['agent.json']);
  const cfg = loadConfig({ configDirs: [dir], configFiles: [], env: { NODEMESH_ACL_TOKEN: 'a-token-of-32-chars-or-so-000000' }, flags: { node: 'node-a', bind: '127.0.9.2' } });
  assert.equal(cfg.dataDir, '/var/lib/nodemesh');
  assert.deepEqual(cfg.retryJoin, agentJson().retry_join);
  assert.equal(cfg.dev, false);
  assert.ok(isLoopback(cfg.client), 'the HTTP API stays on loopback');
  assert.equal(cfg.caFile, agentJson().ca_file);
  // Every path the config names lies in a volume the agent container mounts.
  const mountPaths = (agentContainer().volumeMounts ?? []).map((m) => m.mountPath);
  for (const p of [cfg.caFile, cfg.caKeyFile, cfg.caTrustedRootsFile, cfg.dataDir].filter((x): x is string => !!x)) {
    assert.ok(mountPaths.some((m) => p === m || p.startsWith(`${m}/`)), `${p} is inside a mounted volume`);
  }
});

test('probes: liveness and readiness ask the agent\'s HTTP API on loopback, on paths a real agent serves', async () => {
  const http = { port: Number(agentJson().http_port ?? defaultConfig().httpPort) };
  const live = probeTarget(agentContainer().livenessProbe, 'livenessProbe');
  const ready = probeTarget(agentContainer().readinessProbe, 'readinessProbe');
  for (const [name, t] of [['liveness', live], ['readiness', ready]] as const) {
    // The API listens on 127.0.0.1 only; with hostNetwork the pod IP is the node's, where nothing answers.
    assert.equal(t.host, '127.0.0.1', `${name} probe asks 127.0.0.1`);
    assert.equal(t.port, http.port, `${name} probe uses the agent's HTTP port`);
  }
  assert.equal(live.path, '/v1/agent/self');
  assert.equal(ready.path, '/v1/agent/ready');
  const agent = await startTestAgent({ bind: '127.0.9.1' });
  try {
    const l = await agent.api(live.path);
    assert.equal(l.status, 200, `GET ${live.path}`);
    await l.arrayBuffer();
    // 200 when ready, 503 with a reason otherwise; 404 means the agent does not serve the path at all
    // (/v1/agent/ready is being added to the agent at the time of writing).
    const r = await agent.api(ready.path);
    const body = await r.text();
    assert.notEqual(r.status, 404, `GET ${ready.path} is served by the agent (got 404: ${body})`);
    assert.ok(r.status === 200 || r.status === 503, `GET ${ready.path}: 200 or 503 (got ${r.status}: ${body})`);
  } finally {
    await agent.stop('test done');
  }
});

test('the DaemonSet\'s args, env and volumes start the real agent: config, gossip key, CA and token all taken', async () => {
  const root = tempDir('nodemesh-ds-');
  // The Secret, made the way docs/kubernetes.md says.
  const ca = await runCli(['ca', 'init', '--out', join(root, 'made-ca')]);
  assert.equal(ca.code, 0, ca.stderr);
  const trustDomain = /trust domain (\S+)/.exec(ca.stdout)?.[1];
  const key = await runCli(['keygen']);
  assert.equal(key.code, 0, key.stderr);
  const secretData: Record<string, string> = {
    'encrypt.json': JSON.stringify({ encrypt: key.stdout.trim() }),
    'ca.pem': readFileSync(join(root, 'made-ca', 'ca.pem'), 'utf8'),
    'ca-key.pem': readFileSync(join(root, 'made-ca', 'ca-key.pem'), 'utf8'),
    'acl-token': 'ds-test-token-0123456789abcdef',
  };
  assert.deepEqual(Object.keys(secretData).sort(), Object.keys(secret().stringData ?? {}).sort(), 'the Secret template has these keys, no more');

  // Lay out every volume the agent container mounts under `root`, as the kubelet would.
  const volumes = new Map((podSpec().volumes ?? []).map((v) => [v.name, v]));
  const mounts = (agentContainer().volumeMounts ?? []).map((m) => ({ path: m.mountPath, local: join(root, 'mnt', m.mountPath), volume: volumes.get(m.name)! }));
  const local = (p: string) => {
    const m = mounts.filter((x) => p === x.path || p.startsWith(`${x.path}/`)).sort((a, b) => b.path.length - a.path.length)[0];
    return m ? m.local + p.slice(m.path.length) : p;
  };
  for (const m of mounts) {
    mkdirSync(m.local, { recursive: true });
    const write = (rel: string, text: string, mode: number) => {
      mkdirSync(dirname(join(m.local, rel)), { recursive: true });
      writeFileSync(join(m.local, rel), text, { mode });
    };
    if (m.volume.configMap) {
      for (const [k, v] of Object.entries(configMap().data ?? {})) {
        // retry_join names cluster DNS, which would send a lookup off this machine: tests stay on loopback.
        const cfg = JSON.parse(v) as Record<string, unknown>;
        delete cfg.retry_join;
        write(k, JSON.stringify(cfg).replace(/"(\/[^"]+)"/g, (_all, p: string) => JSON.stringify(local(p))), 0o644);
      }
    }
    if (m.volume.secret) {
      const items: V1KeyToPath[] = m.volume.secret.items ?? Object.keys(secretData).map((k) => ({ key: k, path: k }));
      for (const it of items) write(it.path, secretData[it.key], it.mode ?? m.volume.secret.defaultMode ?? 0o644);
    }
  }

  const env: Record<string, string> = { NODE_NAME: 'ds-node', HOST_IP: '127.0.9.2', NODEMESH_ACL_TOKEN: secretData['acl-token'] };
  const args = (agentContainer().args ?? []).slice(1).map((a) => {
    const x = expand(a, env);
    const eq = x.indexOf('=');
    return eq > 0 && x.slice(eq + 1).startsWith('/') ? `${x.slice(0, eq + 1)}${local(x.slice(eq + 1))}` : x;
  });
  const child = await spawnAgent(args, env);
  try {
    // With the token: the data dir is shown only to a caller that has it.
    const self = await (await fetch(`${child.url}/v1/agent/self`, { headers: { 'X-Consul-Token': secretData['acl-token'] } })).json() as { Config: { NodeName: string }; DebugConfig: { BindAddr: string; DataDir: string; ACLTokenSet: boolean } };
    assert.equal(self.Config.NodeName, 'ds-node');
    assert.equal(self.DebugConfig.BindAddr, '127.0.9.2');
    assert.equal(self.DebugConfig.DataDir, local('/var/lib/nodemesh'));
    assert.equal(self.DebugConfig.ACLTokenSet, true);
    assert.match(child.output(), /"encrypted":true/, 'the gossip key from the Secret is in use');
    const roots = await (await fetch(`${child.url}/v1/agent/connect/ca/roots`)).json() as { TrustDomain: string };
    assert.equal(roots.TrustDomain, trustDomain, 'the CA from the Secret is the mesh root');
    const live = probeTarget(agentContainer().livenessProbe, 'livenessProbe');
    const l = await fetch(`${child.url}${live.path}`);
    assert.equal(l.status, 200);
    await l.arrayBuffer();
  } finally {
    child.proc.kill('SIGTERM');
  }
  // A pod's stop: SIGTERM, then SIGKILL after the grace period. The agent must be gone well before.
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise((r) => { timer = setTimeout(r, (podSpec().terminationGracePeriodSeconds ?? 30) * 1000, 'still running'); });
  const code = await Promise.race([child.exited, grace]);
  clearTimeout(timer);
  if (code === 'still running') child.proc.kill('SIGKILL');
  assert.equal(code, 0, child.output().slice(-2000));
});

test('the capture overlay (daemonset/capture/) adds exactly NET_ADMIN to the agent, puts DNS on the node IP, and turns capture on', () => {
  const overlay = join(DIR, 'capture');
  const kustomization = parseAllDocuments(readFileSync(join(overlay, 'kustomization.yaml'), 'utf8'))[0].toJS() as { resources: string[]; patches: { path: string; target?: unknown }[] };
  assert.deepEqual(kustomization.resources, ['../'], 'built on the base manifests');
  const patches = kustomization.patches.filter((p) => !('target' in p)).map((p) => parseAllDocuments(readFileSync(join(overlay, p.path), 'utf8'))[0].toJS() as Manifest);
  // The JSON patch: one flag appended to the agent's args (container 0 of the base).
  const json = kustomization.patches.filter((p) => 'target' in p).map((p) => parseAllDocuments(readFileSync(join(overlay, p.path), 'utf8'))[0].toJS() as { op: string; path: string; value: string }[]);
  assert.deepEqual(json, [[{ op: 'add', path: '/spec/template/spec/containers/0/args/-', value: '--dns-addr=$(HOST_IP)' }]]);
  assert.equal(podSpec().containers[0].name, 'agent', 'container 0 is the agent');
  assert.ok(agentContainer().env?.some((e) => e.name === 'HOST_IP'), 'HOST_IP is defined for the flag');
  const dsPatch = patches.find((p) => p.kind === 'DaemonSet') as unknown as V1DaemonSet;
  const cmPatch = patches.find((p) => p.kind === 'ConfigMap') as unknown as V1ConfigMap;
  assert.equal(dsPatch.metadata?.name, ds().metadata?.name, 'patches the base DaemonSet');
  assert.equal(cmPatch.metadata?.name, configMap().metadata?.name, 'patches the base ConfigMap');
  // The patched container: the base's security context with the patch's fields over it (a strategic merge).
  const patched = dsPatch.spec!.template.spec!.containers;
  assert.deepEqual(patched.map((c) => c.name), ['agent'], 'only the agent container is touched');
  assert.deepEqual(Object.keys(patched[0]).sort(), ['name', 'securityContext'], 'only its security context');
  const sc = { ...effective(agentContainer()), ...patched[0].securityContext };
  assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] }, 'every capability dropped but NET_ADMIN');
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.equal(sc.seccompProfile?.type, 'RuntimeDefault');
  assert.equal(sc.runAsUser, 0, 'root: Kubernetes gives an added capability to a root process only');
  // The overlay's config file goes through the agent's loader beside the base's.
  const dir = tempDir();
  writeFileSync(join(dir, 'agent.json'), configMap().data!['agent.json']);
  for (const [name, text] of Object.entries(cmPatch.data ?? {})) writeFileSync(join(dir, name), text);
  const cfg = loadConfig({ configDirs: [dir], configFiles: [], env: { NODEMESH_ACL_TOKEN: 'a-token-of-32-chars-or-so-000000' }, flags: { node: 'node-a', bind: '127.0.9.2' } });
  assert.equal(cfg.transparentProxy?.mode, 'permissive', 'capture on, permissive to start with');
});

// Kubernetes pods → nodemesh service definitions: which pods join the mesh, and the registration each one gets.

import type { V1Pod } from '@kubernetes/client-node';
import { NodemeshError } from '../../lib/errors.js';
import { isSpiffeSafe } from '../../identity/spiffe/spiffe-id.js';
import type { ServiceInput } from '../../model/service-definition.js';
import { SIDECAR_MAX_PORT, SIDECAR_MIN_PORT } from '../../model/sidecar-expansion.js';

export const ANNOTATION_INJECT = 'nodemesh.io/inject';
export const ANNOTATION_SERVICE = 'nodemesh.io/service';
export const ANNOTATION_PORT = 'nodemesh.io/port';
export const ANNOTATION_UPSTREAMS = 'nodemesh.io/upstreams';

/** Service Meta keys a pod registration carries; `k8s-pod-uid` also marks a service as this source's own. */
export const META_NAMESPACE = 'k8s-namespace';
export const META_POD = 'k8s-pod';
export const META_POD_UID = 'k8s-pod-uid';

/** Error codes of pods that ask to join the mesh but cannot be registered as they are. */
export const POD_ANNOTATION_INVALID = 'K8S_POD_ANNOTATION_INVALID';
export const POD_SERVICE_NAME_MISSING = 'K8S_POD_SERVICE_NAME_MISSING';
export const POD_PORT_MISSING = 'K8S_POD_PORT_MISSING';

/** A pod's registration: a service definition as `PUT /v1/agent/service/register` takes it, with its ID always set. */
export type PodService = ServiceInput & {
  ID: string;
  Name: string;
  Address: string;
  Port: number;
  Meta: Record<string, string>;
};

export interface PodServiceOptions {
  /**
   * Where the agent opens the pod's upstream listeners. Defaults to the pod's `status.hostIP`: the agent
   * runs in the host network, and a pod reaches it at its node's address ($HOST_IP from the downward API).
   */
  upstreamBindAddress?: string;
}

/** Service names as SPIFFE IDs and DNS take them: letters, digits, '.', '_', '-', at most 63, alphanumeric at both ends. */
const NAME_MAX = 63;
const validName = (name: string) => name.length <= NAME_MAX && isSpiffeSafe(name) && /^[A-Za-z0-9](.*[A-Za-z0-9])?$/.test(name);

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** Whether the pod may receive traffic now: running, addressed, not being deleted, and Ready. */
export function podIsReady(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  if (pod.status?.phase !== 'Running' || !pod.status.podIP) return false;
  return (pod.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** The service ID of a pod: unique on the node, because '~' can appear in neither namespace, pod nor service names. */
export function podServiceId(service: string, namespace: string, podName: string): string {
  return `${service}~${namespace}~${podName}`;
}

interface Upstream { DestinationName: string; LocalBindPort: number }

function parseUpstreams(text: string, problems: string[]): Upstream[] {
  const out: Upstream[] = [];
  const byPort = new Map<number, string>();
  const entries = text.split(',').map((e) => e.trim());
  if (entries.length === 1 && entries[0] === '') return out;
  for (const entry of entries) {
    const m = /^([^:\s]+):([^:\s]+)$/.exec(entry);
    if (!m) {
      problems.push(`${ANNOTATION_UPSTREAMS} entry ${JSON.stringify(entry)} is not <service>:<port> (example: "db:9191,cache:9192")`);
      continue;
    }
    const [, name, portText] = m;
    const port = parsePort(portText);
    if (!validName(name)) problems.push(`${ANNOTATION_UPSTREAMS} entry ${JSON.stringify(entry)}: ${JSON.stringify(name)} is not a valid service name`);
    if (port === undefined) {
      problems.push(`${ANNOTATION_UPSTREAMS} entry ${JSON.stringify(entry)}: ${JSON.stringify(portText)} is not a port (1-65535)`);
      continue;
    }
    if (port >= SIDECAR_MIN_PORT && port <= SIDECAR_MAX_PORT) {
      problems.push(`${ANNOTATION_UPSTREAMS} entry ${JSON.stringify(entry)}: port ${port} is in the sidecar range ${SIDECAR_MIN_PORT}-${SIDECAR_MAX_PORT}, which the agent's public listeners use`);
      continue;
    }
    const taken = byPort.get(port);
    if (taken !== undefined) {
      problems.push(`${ANNOTATION_UPSTREAMS}: port ${port} is used twice (${JSON.stringify(taken)} and ${JSON.stringify(entry)})`);
      continue;
    }
    byPort.set(port, entry);
    out.push({ DestinationName: name, LocalBindPort: port });
  }
  return out;
}

/**
 * The registration a pod asks for, or `null` when it has none now (not annotated `nodemesh.io/inject:
 * "true"`, or not ready), or a NodemeshError (never thrown) when its annotations are malformed. Pure: the
 * same pod always gives the same answer.
 */
export function podService(pod: V1Pod, opts: PodServiceOptions = {}): PodService | NodemeshError | null {
  const meta = pod.metadata;
  const annotations = meta?.annotations ?? {};
  if (annotations[ANNOTATION_INJECT] !== 'true') return null;
  if (!meta?.name || !meta.uid) return null;
  // A pod on its way out is not reported on, even if malformed: it is going away.
  if (meta.deletionTimestamp) return null;
  const namespace = meta.namespace || 'default';
  const where = `pod ${namespace}/${meta.name}`;
  const invalid = (problems: string[]) =>
    new NodemeshError(POD_ANNOTATION_INVALID, `${where}: not registered: ${problems.join('; ')}`, 400);

  const problems: string[] = [];
  const labels = meta.labels ?? {};
  let name: string | undefined;
  const annotated = annotations[ANNOTATION_SERVICE];
  if (annotated !== undefined) {
    if (!validName(annotated)) problems.push(`${ANNOTATION_SERVICE} ${JSON.stringify(annotated)} is not a valid service name (letters, digits, '.', '_', '-'; at most ${NAME_MAX}; alphanumeric at both ends)`);
    else name = annotated;
  } else {
    for (const key of ['app.kubernetes.io/name', 'app']) {
      const v = labels[key];
      if (v && validName(v)) {
        name = v;
        break;
      }
    }
  }

  const containers = pod.spec?.containers ?? [];
  let port: number | undefined;
  const portText = annotations[ANNOTATION_PORT];
  if (portText !== undefined) {
    port = parsePort(portText.trim());
    if (port === undefined) {
      // A named port ("http") is looked up among the containers' ports, as a Service's targetPort is.
      const named = /^[a-z0-9-]{1,15}$/.test(portText) && /[a-z]/.test(portText)
        ? containers.flatMap((c) => c.ports ?? []).find((p) => p.name === portText)
        : undefined;
      if (named) port = named.containerPort;
      else problems.push(`${ANNOTATION_PORT} ${JSON.stringify(portText)} is neither a port (1-65535) nor the name of a container port`);
    }
  }
  const upstreams = parseUpstreams(annotations[ANNOTATION_UPSTREAMS] ?? '', problems);
  if (problems.length) return invalid(problems);

  if (!name) {
    return new NodemeshError(POD_SERVICE_NAME_MISSING,
      `${where}: not registered: no service name (set annotation ${ANNOTATION_SERVICE}, or label app.kubernetes.io/name or app)`, 400);
  }
  if (port === undefined) {
    port = containers[0]?.ports?.[0]?.containerPort;
    if (port === undefined) {
      return new NodemeshError(POD_PORT_MISSING,
        `${where}: not registered: no port (set annotation ${ANNOTATION_PORT}, or declare a containerPort on the first container)`, 400);
    }
  }

  if (!podIsReady(pod)) return null;
  const bindAddress = opts.upstreamBindAddress || pod.status?.hostIP || '';
  // Running pods have a hostIP; until one is known, a pod with upstreams has nowhere to reach them.
  if (upstreams.length > 0 && !bindAddress) return null;

  return {
    ID: podServiceId(name, namespace, meta.name),
    Name: name,
    Address: pod.status!.podIP!,
    Port: port,
    Meta: { [META_NAMESPACE]: namespace, [META_POD]: meta.name, [META_POD_UID]: meta.uid },
    Connect: {
      SidecarService: {
        Proxy: { Upstreams: upstreams.map((u) => ({ DestinationName: u.DestinationName, LocalBindAddress: bindAddress, LocalBindPort: u.LocalBindPort })) },
      },
    },
  };
}

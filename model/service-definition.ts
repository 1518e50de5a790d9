// Consul service and check definitions: the decoding schema, validation with Consul's texts, and normalization.

import { NodemeshError, multiError, type ErrorCode } from '../lib/errors.js';
import type { CheckDefinition, HealthStatus, ServiceRecord, Upstream } from './catalog-types.js';
import { HEALTH_STATUSES } from './catalog-types.js';
import type { Schema } from '../lib/strict-json.js';
import { DecodeError, decodeBody, decodeStruct } from '../lib/strict-json.js';

export const CHECK_SCHEMA: Schema = {
  CheckID: 'string', ID: 'string', Name: 'string', Status: 'string', Notes: 'string', ServiceID: 'string',
  ScriptArgs: { array: 'string' }, Args: { array: 'string' }, HTTP: 'string', Header: 'map[string][]string',
  Method: 'string', Body: 'string', TCP: 'string', Interval: 'duration', AliasNode: 'string',
  AliasService: 'string', DockerContainerID: 'string', Shell: 'string', GRPC: 'string', GRPCUseTLS: 'bool',
  TLSSkipVerify: 'bool', Timeout: 'duration', TTL: 'duration', SuccessBeforePassing: 'int',
  FailuresBeforeCritical: 'int', DeregisterCriticalServiceAfter: 'duration', OutputMaxSize: 'int', Token: 'string',
};

const UPSTREAM_SCHEMA: Schema = {
  DestinationType: 'string', DestinationNamespace: 'string', DestinationName: 'string', Datacenter: 'string',
  LocalBindAddress: 'string', LocalBindPort: 'int', Config: 'any', MeshGateway: 'any',
};

const PROXY_SCHEMA: Schema = {
  DestinationServiceName: 'string', DestinationServiceID: 'string', LocalServiceAddress: 'string',
  LocalServicePort: 'int', Config: 'any', Upstreams: { array: { struct: UPSTREAM_SCHEMA } }, MeshGateway: 'any',
  Expose: 'any', TransparentProxy: 'any',
};

const SERVICE_FIELDS: Schema = {
  Kind: 'string', ID: 'string', Name: 'string', Tags: { array: 'string' }, Address: 'string',
  TaggedAddresses: 'any', Meta: 'map[string]string', Port: 'int', Check: { struct: CHECK_SCHEMA },
  Checks: { array: { struct: CHECK_SCHEMA } }, Weights: { struct: { Passing: 'int', Warning: 'int' } },
  Token: 'string', EnableTagOverride: 'bool', Proxy: { struct: PROXY_SCHEMA }, Namespace: 'string',
};

export const SERVICE_SCHEMA: Schema = {
  ...SERVICE_FIELDS,
  Connect: { struct: { Native: 'bool', Bridge: 'bool', SidecarService: { struct: { ...SERVICE_FIELDS, Connect: { struct: { Native: 'bool' } } } } } },
};

/** A check as submitted, decoded (durations in ms). */
export interface CheckInput {
  CheckID?: string; ID?: string; Name?: string; Status?: string; Notes?: string; ServiceID?: string;
  ScriptArgs?: string[]; Args?: string[]; HTTP?: string; Header?: Record<string, string[]>; Method?: string;
  Body?: string; TCP?: string; Interval?: number; AliasNode?: string; AliasService?: string;
  DockerContainerID?: string; Shell?: string; GRPC?: string; GRPCUseTLS?: boolean; TLSSkipVerify?: boolean;
  Timeout?: number; TTL?: number; SuccessBeforePassing?: number; FailuresBeforeCritical?: number;
  DeregisterCriticalServiceAfter?: number; OutputMaxSize?: number;
}

/** A service as submitted, decoded. */
export interface ServiceInput {
  Kind?: string; ID?: string; Name?: string; Tags?: string[]; Address?: string; TaggedAddresses?: unknown;
  Meta?: Record<string, string>; Port?: number; Check?: CheckInput; Checks?: CheckInput[];
  Weights?: { Passing?: number; Warning?: number }; EnableTagOverride?: boolean;
  Proxy?: { DestinationServiceName?: string; DestinationServiceID?: string; LocalServiceAddress?: string;
    LocalServicePort?: number; Config?: unknown; Upstreams?: Partial<Upstream>[]; MeshGateway?: unknown; Expose?: unknown };
  /**
   * `Bridge` (a nodemesh extension): the service runs at Address:Port on a host with no agent (a legacy
   * database, an appliance); this agent terminates mesh mTLS for it and forwards there.
   */
  Connect?: { Native?: boolean; Bridge?: boolean; SidecarService?: ServiceInput };
}

/** Meta key marking where a registration came from (Consul's convention: consul-k8s writes `kubernetes`). */
export const EXTERNAL_SOURCE = 'external-source';

/** A validated check ready to be stored and run. */
export interface CheckSpec {
  CheckID: string;
  Name: string;
  Status: HealthStatus;
  Notes: string;
  ServiceID: string;
  Type: string;
  Definition: CheckDefinition;
}

export const badRequest = (message: string, code: ErrorCode = 'API_BAD_REQUEST') => new NodemeshError(code, message, 400);

/** Wraps a decode failure the way Consul does. */
export function decodeOrThrow<T>(decode: () => unknown): T {
  try {
    return decode() as T;
  } catch (e) {
    if (e instanceof DecodeError) throw badRequest(`Request decode failed: ${e.message}`, 'API_DECODE');
    throw e;
  }
}

export const decodeServiceBody = (text: string) => decodeOrThrow<ServiceInput>(() => decodeBody(text, SERVICE_SCHEMA));
export const decodeServiceObject = (obj: Record<string, unknown>) => decodeOrThrow<ServiceInput>(() => decodeStruct(obj, SERVICE_SCHEMA));
export const decodeCheckBody = (text: string) => decodeOrThrow<CheckInput>(() => decodeBody(text, CHECK_SCHEMA));

const META_KEY = /^[a-zA-Z0-9_-]+$/;

/** Consul's metadata rules; returns the error text or null. */
export function metaError(meta: Record<string, string>): string | null {
  const entries = Object.entries(meta);
  if (entries.length > 64) return 'Node metadata cannot contain more than 64 key/value pairs';
  for (const [k, v] of entries) {
    const pair = `Couldn't load metadata pair ('${k}', '${v}'): `;
    if (k === '') return `${pair}Key cannot be blank`;
    if (!META_KEY.test(k)) return `${pair}Key contains invalid characters`;
    if (k.length > 128) return `${pair}Key is too long (limit: 128 characters)`;
    if (k.startsWith('consul-')) return `${pair}Key prefix 'consul-' is reserved for internal use`;
    if (v.length > 512) return `${pair}Value is too long (limit: 512 characters)`;
  }
  return null;
}

/** Validates one check and turns it into a spec. `defaults` gives the ID and name Consul would pick. */
/**
 * A check with nothing set (`"Check": {}`, as Consul's CLI sends in every sidecar) is no check at all: Consul skips
 * it (its CheckType.Empty), rather than refusing it as a TTL check without a TTL.
 */
export function isEmptyCheck(c: CheckInput | undefined): boolean {
  if (!c) return true;
  const blank = (v: unknown): boolean => v === undefined || v === null || v === '' || v === 0 || v === false
    || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && !Array.isArray(v) && Object.values(v as object).every(blank));
  return Object.values(c).every(blank);
}

export function checkSpec(c: CheckInput, defaults: { id: string; name: string; serviceId: string }): CheckSpec {
  const invalid = (m: string) => badRequest(`Invalid check: ${m}`, 'CHECK_INVALID');
  if ((c.ScriptArgs?.length ?? 0) > 0 || (c.Args?.length ?? 0) > 0) {
    throw badRequest("Scripts are disabled on this agent; nodemesh does not run script checks (use an HTTP, TCP or TTL check)", 'CHECK_SCRIPT_DISABLED');
  }
  if (c.DockerContainerID || c.Shell) throw badRequest('Docker checks are not supported by nodemesh (use an HTTP, TCP or TTL check)', 'CHECK_UNSUPPORTED');
  if (c.GRPC) throw badRequest('gRPC checks are not supported by nodemesh yet (use an HTTP, TCP or TTL check)', 'CHECK_UNSUPPORTED');
  const interval = c.Interval ?? 0;
  const ttl = c.TTL ?? 0;
  const alias = Boolean(c.AliasService || c.AliasNode);
  const intervalCheck = Boolean(c.HTTP || c.TCP);
  if (interval > 0 && ttl > 0) throw invalid('Interval and TTL cannot both be specified');
  if (intervalCheck && interval <= 0) throw invalid('Interval must be > 0 for Script, HTTP, or TCP checks');
  if (!intervalCheck && !alias && ttl <= 0) throw invalid('TTL must be > 0 for TTL checks');
  if (c.HTTP && c.TCP) throw invalid('HTTP and TCP cannot both be specified');
  if (c.HTTP) {
    let url: URL | undefined;
    try { url = new URL(c.HTTP); } catch { /* reported below */ }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw invalid(`HTTP must be an http:// or https:// URL, got ${JSON.stringify(c.HTTP)}`);
  }
  if (c.TCP && !/^(\[[^\]]+\]|[^:]+):\d{1,5}$/.test(c.TCP)) throw invalid(`TCP must be host:port, got ${JSON.stringify(c.TCP)}`);
  for (const [k, v] of [['Timeout', c.Timeout], ['Interval', c.Interval], ['TTL', c.TTL], ['DeregisterCriticalServiceAfter', c.DeregisterCriticalServiceAfter]] as const) {
    if ((v ?? 0) < 0) throw invalid(`${k} must not be negative`);
  }
  for (const [k, v] of [['SuccessBeforePassing', c.SuccessBeforePassing], ['FailuresBeforeCritical', c.FailuresBeforeCritical], ['OutputMaxSize', c.OutputMaxSize]] as const) {
    if ((v ?? 0) < 0) throw invalid(`${k} must not be negative`);
  }
  const status = (c.Status ?? '') === '' ? 'critical' : c.Status as HealthStatus;
  if (!HEALTH_STATUSES.includes(status) || status === 'maintenance') throw invalid(`Status must be one of passing, warning or critical, got ${JSON.stringify(c.Status)}`);
  const def: CheckDefinition = {};
  const type = ttl > 0 ? 'ttl' : c.HTTP ? 'http' : c.TCP ? 'tcp' : 'alias';
  if (c.HTTP) Object.assign(def, { HTTP: c.HTTP, Header: c.Header, Method: c.Method, Body: c.Body, TLSSkipVerify: c.TLSSkipVerify });
  if (c.TCP) def.TCP = c.TCP;
  if (ttl > 0) def.TTL = ttl;
  if (interval > 0) def.Interval = Math.max(interval, 1000);
  if (intervalCheck) def.Timeout = c.Timeout && c.Timeout > 0 ? c.Timeout : 10_000;
  if (alias) Object.assign(def, { AliasService: c.AliasService, AliasNode: c.AliasNode });
  for (const k of ['DeregisterCriticalServiceAfter', 'SuccessBeforePassing', 'FailuresBeforeCritical', 'OutputMaxSize'] as const) {
    if (c[k]) def[k] = c[k];
  }
  for (const k of Object.keys(def) as (keyof CheckDefinition)[]) if (def[k] === undefined) delete def[k];
  return {
    CheckID: c.CheckID || c.ID || defaults.id,
    Name: c.Name || defaults.name,
    Status: status,
    Notes: c.Notes ?? '',
    ServiceID: defaults.serviceId,
    Type: type,
    Definition: def,
  };
}

export interface NormalizedService {
  service: Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>;
  checks: CheckSpec[];
  sidecar?: ServiceInput;
}

function isIPv4(a: string) { return /^(\d{1,3}\.){3}\d{1,3}$/.test(a); }
function isIPv6(a: string) { return a.includes(':'); }

/** Validates a service definition and returns the record to store, its checks and any sidecar request. */
export function normalizeService(s: ServiceInput): NormalizedService {
  const name = s.Name ?? '';
  if (name === '') throw badRequest('Missing service name', 'SERVICE_NAME_MISSING');
  if (name.length > 256 || /[\/\x00-\x1f]/.test(name)) throw badRequest(`Invalid service name ${JSON.stringify(name)}: at most 256 characters, no '/' or control characters`, 'SERVICE_NAME_INVALID');
  const id = s.ID || name;
  if (/[\x00-\x1f]/.test(id) || id.length > 256) throw badRequest(`Invalid service ID ${JSON.stringify(id)}`, 'SERVICE_ID_INVALID');
  const meta = s.Meta ?? {};
  const me = metaError(meta);
  if (me) throw badRequest(`Invalid Service Meta: ${me}`, 'SERVICE_META_INVALID');
  const port = s.Port ?? 0;
  if (port < 0 || port > 65535) throw badRequest(`Invalid service port ${port}: must be between 0 and 65535`, 'SERVICE_PORT_INVALID');
  const address = s.Address ?? '';
  if (address === '0.0.0.0' || address === '::' || address === '[::]') throw badRequest('Invalid service address', 'SERVICE_ADDRESS_INVALID');
  let weights = { Passing: 1, Warning: 1 };
  if (s.Weights) {
    weights = { Passing: s.Weights.Passing ?? 0, Warning: s.Weights.Warning ?? 0 };
    if (weights.Passing <= 0) throw badRequest('Invalid Weights: Passing must be greater than 0', 'SERVICE_WEIGHTS_INVALID');
    if (weights.Warning < 0) throw badRequest('Invalid Weights: Warning must be greater or equal than 0', 'SERVICE_WEIGHTS_INVALID');
  }
  const tagged = taggedAddresses(s.TaggedAddresses, address, port);
  const kind = s.Kind ?? '';

  const errs: string[] = [];
  let proxy: ServiceRecord['Proxy'];
  if (kind === 'connect-proxy') {
    const p = s.Proxy ?? {};
    if (!p.DestinationServiceName) errs.push('Proxy.DestinationServiceName must be non-empty for Connect proxy services');
    if (port === 0) errs.push('Port must be set for a Connect proxy');
    if (s.Connect?.Native) errs.push('A Proxy cannot also be Connect Native, only typical services');
    const upstreams = normalizeUpstreams(p.Upstreams ?? [], errs);
    proxy = {
      DestinationServiceName: p.DestinationServiceName ?? '',
      DestinationServiceID: p.DestinationServiceID || undefined,
      LocalServiceAddress: p.LocalServiceAddress || undefined,
      LocalServicePort: p.LocalServicePort || undefined,
      Config: (p.Config as Record<string, unknown>) ?? undefined,
      Upstreams: upstreams,
      MeshGateway: (p.MeshGateway as Record<string, unknown>) ?? undefined,
      Expose: (p.Expose as Record<string, unknown>) ?? undefined,
    };
    for (const k of Object.keys(proxy) as (keyof typeof proxy)[]) if (proxy[k] === undefined) delete proxy[k];
  } else if (s.Proxy && Object.keys(s.Proxy).length > 0) {
    errs.push('Proxy may only be set for services of Kind "connect-proxy"');
  }
  if (s.Connect?.SidecarService && kind === 'connect-proxy') errs.push('A Proxy cannot have a SidecarService');
  const bridge = s.Connect?.Bridge === true;
  if (bridge) {
    if (kind) errs.push('Connect.Bridge is for a plain service on a host with no agent, not for a proxy or gateway');
    if (s.Connect?.Native) errs.push('A bridged service cannot also be Connect Native');
    if (!address) errs.push("Connect.Bridge needs the external service's Address: where this agent forwards mesh traffic");
    if (!port) errs.push("Connect.Bridge needs the external service's Port");
  }
  if (errs.length) throw badRequest(multiError(errs), 'SERVICE_CONNECT_INVALID');

  // A bridged service with no check of its own gets a TCP check on the external address, so a
  // legacy host that goes down leaves load balancing.
  const hostPort = `${isIPv6(address) ? `[${address}]` : address}:${port}`;
  const checkInputs = [...(isEmptyCheck(s.Check) ? [] : [s.Check!]), ...(s.Checks ?? [])];
  if (bridge && checkInputs.length === 0) checkInputs.push({ Name: `Bridge to ${hostPort}`, TCP: hostPort, Interval: 10_000, Timeout: 2_000 });
  const checks = checkInputs.map((c, i) => checkSpec(c, {
    id: checkInputs.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`,
    name: `Service '${name}' check`,
    serviceId: id,
  }));
  const ids = new Set<string>();
  for (const c of checks) {
    if (ids.has(c.CheckID)) throw badRequest(`Invalid check: duplicate CheckID ${JSON.stringify(c.CheckID)}`, 'CHECK_INVALID');
    ids.add(c.CheckID);
  }

  const service: NormalizedService['service'] = {
    ID: id, Service: name, Tags: s.Tags ?? [], Meta: bridge ? { [EXTERNAL_SOURCE]: 'nodemesh-bridge', ...meta } : meta, Port: port, Address: address,
    Weights: weights, EnableTagOverride: s.EnableTagOverride ?? false,
  };
  if (kind) service.Kind = kind;
  if (tagged) service.TaggedAddresses = tagged;
  if (proxy) service.Proxy = proxy;
  if (s.Connect?.Native) service.Connect = { Native: true };
  // The bridge is the sidecar: its public listener terminates mTLS and forwards to Address:Port.
  return { service, checks, sidecar: s.Connect?.SidecarService ?? (bridge ? {} : undefined) };
}

function normalizeUpstreams(list: Partial<Upstream>[], errs: string[]): Upstream[] {
  const seen = new Set<string>();
  return list.map((u) => {
    const type = u.DestinationType || 'service';
    if (type !== 'service' && type !== 'prepared_query') errs.push(`upstream destination type must be "service" or "prepared_query", got ${JSON.stringify(type)}`);
    if (!u.DestinationName) errs.push('upstream destination name cannot be empty');
    if (!u.LocalBindPort) errs.push('upstream local bind port cannot be zero');
    else if (u.LocalBindPort < 0 || u.LocalBindPort > 65535) errs.push(`upstream local bind port ${u.LocalBindPort} is out of range`);
    const bind = `${u.LocalBindAddress ?? ''}:${u.LocalBindPort ?? 0}`;
    if (u.LocalBindPort && seen.has(bind)) errs.push(`upstreams cannot contain duplicates of ${bind}`);
    seen.add(bind);
    const out: Upstream = { DestinationType: type, DestinationName: u.DestinationName ?? '', LocalBindPort: u.LocalBindPort ?? 0 };
    for (const k of ['DestinationNamespace', 'Datacenter', 'LocalBindAddress', 'Config', 'MeshGateway'] as const) {
      if (u[k] !== undefined && u[k] !== '') (out as unknown as Record<string, unknown>)[k] = u[k];
    }
    return out;
  });
}


function taggedAddresses(input: unknown, address: string, port: number): ServiceRecord['TaggedAddresses'] {
  const out: NonNullable<ServiceRecord['TaggedAddresses']> = {};
  if (input !== undefined) {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw badRequest('Request decode failed: json: cannot unmarshal into Go struct field .TaggedAddresses of type map[string]structs.ServiceAddress', 'API_DECODE');
    }
    for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
      const o = v as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || typeof (o.Address ?? '') !== 'string' || !Number.isInteger(o.Port ?? 0)) {
        throw badRequest(`Request decode failed: json: cannot unmarshal TaggedAddresses.${k}: want {"Address": string, "Port": int}`, 'API_DECODE');
      }
      out[k] = { Address: (o.Address as string) ?? '', Port: (o.Port as number) ?? 0 };
    }
  }
  if (address && (isIPv4(address) || isIPv6(address))) {
    const fam = isIPv4(address) ? 'ipv4' : 'ipv6';
    out[`lan_${fam}`] ??= { Address: address, Port: port };
    out[`wan_${fam}`] ??= { Address: address, Port: port };
  }
  return Object.keys(out).length ? out : undefined;
}

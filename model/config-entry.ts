// Consul's config entries (service-defaults, proxy-defaults, service-resolver, service-splitter, service-router, mesh): shapes, decoding and validation.

import { NodemeshError, multiError } from '../lib/errors.js';
import { DecodeError, decodeStruct, type FieldType, type Schema } from '../lib/strict-json.js';
import { parseGoDuration } from '../lib/go-duration.js';
import { compileSubsetFilter } from './subset-filter.js';
import { httpMatchErrors, type HttpMatchSpec } from './http-match.js';
import type { EscapedSlashes, PathOptions, UnderscoreAction } from './request-path.js';

export const KINDS = ['service-defaults', 'proxy-defaults', 'service-resolver', 'service-splitter', 'service-router', 'mesh'] as const;
export type Kind = (typeof KINDS)[number];
export const PROTOCOLS = ['tcp', 'http', 'http2', 'grpc'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
/** Protocols that can be routed, split and retried per request. */
export const L7_PROTOCOLS: readonly string[] = ['http', 'http2', 'grpc'];

/** An entry as written: Consul's fields as given (PascalCase). */
export interface ConfigEntryInput {
  Kind: Kind;
  Name: string;
  [field: string]: unknown;
}

/** A stored entry, with its indexes. */
export type ConfigEntry = ConfigEntryInput & { CreateIndex: number; ModifyIndex: number };

/** One config entry by kind and name, as routing and protocol lookups read them. */
export type EntryLookup = (kind: Kind, name: string) => ConfigEntry | undefined;
/** Config entries as routing reads them, and an index that rises on every change. */
export interface EntrySource { readonly index: number; get: EntryLookup }

const S = (struct: Schema): FieldType => ({ struct });
const MESH_GATEWAY = S({ Mode: 'string' });
const EXPOSE = S({ Checks: 'bool', Paths: { array: S({ Path: 'string', LocalPathPort: 'int', ListenerPort: 'int', Protocol: 'string' }) } });
const COMMON: Schema = { Kind: 'string', Name: 'string', Namespace: 'string', Meta: 'map[string]string', CreateIndex: 'any', ModifyIndex: 'any' };

const HEADER_MATCH = S({ Name: 'string', Present: 'bool', Exact: 'string', Prefix: 'string', Suffix: 'string', Regex: 'string', Invert: 'bool' });
const QUERY_MATCH = S({ Name: 'string', Present: 'bool', Exact: 'string', Regex: 'string' });

/** Consul's names for the request normalization actions (mesh entry, HTTP.Incoming.RequestNormalization) → ours. */
const ESCAPED_SLASH_ACTIONS: Record<string, EscapedSlashes | undefined> = { '': 'reject', DEFAULT: 'reject', REJECT_REQUEST: 'reject', KEEP_UNCHANGED: 'keep', UNESCAPE_AND_FORWARD: 'unescape', UNESCAPE_AND_REDIRECT: undefined };
const UNDERSCORE_ACTIONS: Record<string, UnderscoreAction> = { '': 'reject', REJECT_REQUEST: 'reject', DROP_HEADER: 'drop', ALLOW: 'allow' };

const SCHEMAS: Record<Kind, Schema> = {
  // Only what nodemesh enforces: other mesh fields (TLS, TransparentProxy) are refused as unknown, not silently ignored.
  mesh: {
    ...COMMON,
    HTTP: S({
      SanitizeXForwardedClientCert: 'bool',
      Incoming: S({ RequestNormalization: S({ InsecureDisablePathNormalization: 'bool', MergeSlashes: 'bool', PathWithEscapedSlashesAction: 'string', HeadersWithUnderscoresAction: 'string' }) }),
    }),
  },
  'service-defaults': { ...COMMON, Protocol: 'string', MeshGateway: MESH_GATEWAY, Expose: EXPOSE, ExternalSNI: 'string' },
  'proxy-defaults': { ...COMMON, Config: 'any', MeshGateway: MESH_GATEWAY, Expose: EXPOSE },
  'service-resolver': {
    ...COMMON,
    DefaultSubset: 'string',
    Subsets: { map: S({ Filter: 'string', OnlyPassing: 'bool' }) },
    Redirect: S({ Service: 'string', ServiceSubset: 'string', Namespace: 'string', Datacenter: 'string' }),
    Failover: { map: S({ Service: 'string', ServiceSubset: 'string', Namespace: 'string', Datacenters: { array: 'string' } }) },
    ConnectTimeout: 'string',
    // nodemesh extension (not in Consul): limits, local rate limit and outlier detection for calls to this service.
    Nodemesh: S({
      Limits: S({ MaxConcurrentRequests: 'uint', MaxConnections: 'uint', MaxPendingRequests: 'uint' }),
      RateLimit: S({ RequestsPerSecond: 'float', Burst: 'uint' }),
      OutlierDetection: S({ MaxFailures: 'uint', BaseEjectionTime: 'string', Disabled: 'bool' }),
    }),
    LoadBalancer: S({
      Policy: 'string',
      RingHashConfig: S({ MinimumRingSize: 'uint', MaximumRingSize: 'uint' }),
      LeastRequestConfig: S({ ChoiceCount: 'uint' }),
      HashPolicies: { array: S({ Field: 'string', FieldValue: 'string', CookieConfig: S({ Session: 'bool', TTL: 'string', Path: 'string' }), SourceIP: 'bool', Terminal: 'bool' }) },
    }),
  },
  'service-splitter': {
    ...COMMON,
    Splits: { array: S({ Weight: 'float', Service: 'string', ServiceSubset: 'string', Namespace: 'string' }) },
  },
  'service-router': {
    ...COMMON,
    Routes: { array: S({
      Match: S({ HTTP: S({ PathExact: 'string', PathPrefix: 'string', PathRegex: 'string', Header: { array: HEADER_MATCH }, QueryParam: { array: QUERY_MATCH }, Methods: { array: 'string' } }) }),
      Destination: S({
        Service: 'string', ServiceSubset: 'string', Namespace: 'string', PrefixRewrite: 'string', RequestTimeout: 'string',
        NumRetries: 'uint', RetryOnConnectFailure: 'bool', RetryOnStatusCodes: { array: 'uint' },
        // nodemesh extension (not in Consul): fault injection and traffic mirroring for this route.
        Nodemesh: S({
          Fault: S({ DelayPercent: 'float', Delay: 'string', AbortPercent: 'float', AbortStatus: 'uint' }),
          Mirror: S({ Service: 'string', Percent: 'float' }),
        }),
      }),
    }) },
  },
};

const NAME = /^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$/;
const SUBSET = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const LB_POLICIES = ['', 'random', 'round_robin', 'least_request', 'ring_hash', 'maglev'];

const invalid = (message: string) => new NodemeshError('CONFIG_ENTRY_INVALID', message, 400);
type Rec = Record<string, unknown>;

function durationError(field: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  try {
    if (parseGoDuration(String(v)) < 0) return `${field} must not be negative`;
  } catch (e) {
    return `${field}: ${(e as Error).message}`;
  }
  return undefined;
}

/** How L7 listeners normalize requests, from the mesh entry (nodemesh's strict defaults without one). */
export interface RequestNormalization {
  path: PathOptions;
  underscores: UnderscoreAction;
}

export function requestNormalizationOf(get: EntryLookup): RequestNormalization {
  const rn = (((get('mesh', 'mesh')?.HTTP as Rec | undefined)?.Incoming as Rec | undefined)?.RequestNormalization ?? {}) as Rec;
  return {
    path: { mergeSlashes: rn.MergeSlashes !== false, escapedSlashes: ESCAPED_SLASH_ACTIONS[String(rn.PathWithEscapedSlashesAction ?? '')] ?? 'reject' },
    underscores: UNDERSCORE_ACTIONS[String(rn.HeadersWithUnderscoresAction ?? '')] ?? 'reject',
  };
}

function validateMesh(e: Rec, errs: string[]): void {
  const http = e.HTTP as Rec | undefined;
  const rn = (http?.Incoming as Rec | undefined)?.RequestNormalization as Rec | undefined;
  if (http?.SanitizeXForwardedClientCert === false) errs.push('HTTP.SanitizeXForwardedClientCert: nodemesh always replaces X-Forwarded-Client-Cert with the verified peer; it cannot be turned off');
  if (!rn) return;
  if (rn.InsecureDisablePathNormalization) errs.push('HTTP.Incoming.RequestNormalization.InsecureDisablePathNormalization: nodemesh always normalizes paths (an L7 decision on one path and an app serving another is a bypass); use MergeSlashes and PathWithEscapedSlashesAction to loosen it');
  const esc = String(rn.PathWithEscapedSlashesAction ?? '');
  if (esc === 'UNESCAPE_AND_REDIRECT') errs.push('HTTP.Incoming.RequestNormalization.PathWithEscapedSlashesAction UNESCAPE_AND_REDIRECT is not supported: use UNESCAPE_AND_FORWARD (the same decision, forwarded without a redirect)');
  else if (!(esc in ESCAPED_SLASH_ACTIONS)) errs.push(`HTTP.Incoming.RequestNormalization.PathWithEscapedSlashesAction ${JSON.stringify(esc)}: one of ${Object.keys(ESCAPED_SLASH_ACTIONS).filter(Boolean).join(', ')}`);
  const us = String(rn.HeadersWithUnderscoresAction ?? '');
  if (!(us in UNDERSCORE_ACTIONS)) errs.push(`HTTP.Incoming.RequestNormalization.HeadersWithUnderscoresAction ${JSON.stringify(us)}: one of ${Object.keys(UNDERSCORE_ACTIONS).filter(Boolean).join(', ')}`);
}

/** The protocol a service speaks by config: its service-defaults, else proxy-defaults' Config.protocol, else tcp. */
export function protocolOf(service: string, get: EntryLookup): string {
  const sd = get('service-defaults', service)?.Protocol;
  if (typeof sd === 'string' && sd) return sd;
  const pd = (get('proxy-defaults', 'global')?.Config as Rec | undefined)?.protocol;
  return typeof pd === 'string' && pd ? pd : 'tcp';
}

function validateRouter(e: Rec, errs: string[]): void {
  const routes = (e.Routes as Rec[] | undefined) ?? [];
  routes.forEach((r, i) => {
    const at = `Route[${i}]`;
    const http = (r.Match as Rec | undefined)?.HTTP as Rec | undefined;
    if (http) errs.push(...httpMatchErrors(http as HttpMatchSpec, at));
    const d = r.Destination as Rec | undefined;
    if (d) {
      if (d.PrefixRewrite && !(http?.PathExact || http?.PathPrefix)) errs.push(`${at} cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix`);
      const te = durationError(`${at} RequestTimeout`, d.RequestTimeout || undefined);
      if (te) errs.push(te);
      for (const c of (d.RetryOnStatusCodes as number[] | undefined) ?? []) if (c < 100 || c > 599) errs.push(`${at} RetryOnStatusCodes contains an invalid status code ${c}`);
      const ext = d.Nodemesh as Rec | undefined;
      const fault = ext?.Fault as Rec | undefined;
      const mirror = ext?.Mirror as Rec | undefined;
      for (const [k, v] of [['Fault.DelayPercent', fault?.DelayPercent], ['Fault.AbortPercent', fault?.AbortPercent], ['Mirror.Percent', mirror?.Percent]] as const) {
        if (v !== undefined && (Number(v) < 0 || Number(v) > 100)) errs.push(`${at} Nodemesh.${k} must be between 0 and 100, got ${String(v)}`);
      }
      if (fault?.DelayPercent && !fault.Delay) errs.push(`${at} Nodemesh.Fault.DelayPercent needs a Delay, e.g. "2s"`);
      const fd = durationError(`${at} Nodemesh.Fault.Delay`, fault?.Delay || undefined);
      if (fd) errs.push(fd);
      if (fault?.AbortPercent && !(Number(fault.AbortStatus) >= 200 && Number(fault.AbortStatus) <= 599)) errs.push(`${at} Nodemesh.Fault.AbortStatus must be an HTTP status between 200 and 599`);
      if (mirror && !mirror.Service) errs.push(`${at} Nodemesh.Mirror needs a Service`);
    }
  });
}

function validateSplitter(e: Rec, errs: string[]): void {
  const splits = (e.Splits as Rec[] | undefined) ?? [];
  if (splits.length === 0) errs.push('no splits configured');
  let sum = 0;
  for (const [i, s] of splits.entries()) {
    const w = s.Weight as number | undefined ?? 0;
    if (w < 0 || w > 100) errs.push(`Split[${i}] Weight must be between 0 and 100, got ${w}`);
    // Consul keeps weights to 2 decimal places (basis points).
    sum += Math.round(w * 100);
  }
  if (splits.length && sum !== 10_000) errs.push(`the sum of all split weights must be 100, not ${(sum / 100).toFixed(2)}`);
}

function validateResolver(e: Rec, errs: string[]): void {
  const subsets = (e.Subsets as Record<string, Rec> | undefined) ?? {};
  for (const name of Object.keys(subsets)) if (!SUBSET.test(name)) errs.push(`Subset ${JSON.stringify(name)} is invalid: use lowercase letters, digits and dashes`);
  for (const [name, def] of Object.entries(subsets)) {
    try {
      compileSubsetFilter(def.Filter as string | undefined);
    } catch (e) {
      errs.push(`Subset ${JSON.stringify(name)} has an invalid filter: ${(e as Error).message}`);
    }
  }
  if (e.DefaultSubset && !(String(e.DefaultSubset) in subsets)) errs.push(`DefaultSubset ${JSON.stringify(e.DefaultSubset)} is not a valid subset`);
  for (const key of Object.keys((e.Failover as Rec | undefined) ?? {})) {
    if (key !== '*' && !(key in subsets)) errs.push(`Bad Failover[${JSON.stringify(key)}]: not a valid subset`);
  }
  if (e.Redirect && (e.Subsets || e.DefaultSubset || e.Failover)) errs.push('Redirect cannot be combined with Subsets, DefaultSubset or Failover');
  const ct = durationError('ConnectTimeout', e.ConnectTimeout || undefined);
  if (ct) errs.push(ct);
  const ext = e.Nodemesh as Rec | undefined;
  const rl = ext?.RateLimit as Rec | undefined;
  if (rl && !(Number(rl.RequestsPerSecond) > 0)) errs.push('Nodemesh.RateLimit.RequestsPerSecond must be above 0');
  const od = ext?.OutlierDetection as Rec | undefined;
  const be = durationError('Nodemesh.OutlierDetection.BaseEjectionTime', od?.BaseEjectionTime || undefined);
  if (be) errs.push(be);
  const lb = e.LoadBalancer as Rec | undefined;
  if (lb) {
    const policy = String(lb.Policy ?? '');
    if (!LB_POLICIES.includes(policy)) errs.push(`Bad LoadBalancer policy: ${JSON.stringify(policy)} is not supported (one of ${LB_POLICIES.filter(Boolean).join(', ')})`);
    if (lb.HashPolicies && policy !== 'ring_hash' && policy !== 'maglev') errs.push(`LoadBalancer HashPolicies specified for non-hash-based Policy: ${JSON.stringify(policy)}`);
    for (const [i, h] of ((lb.HashPolicies as Rec[] | undefined) ?? []).entries()) {
      if (h.SourceIP && (h.Field || h.FieldValue)) errs.push(`HashPolicies[${i}]: a single hash policy cannot hash both a source address and a "${String(h.Field)}"`);
      if (!h.SourceIP && !['header', 'cookie', 'query_parameter'].includes(String(h.Field ?? ''))) errs.push(`HashPolicies[${i}]: Field must be header, cookie or query_parameter (or set SourceIP)`);
      if (h.Field && !h.FieldValue) errs.push(`HashPolicies[${i}]: FieldValue is required for Field ${JSON.stringify(h.Field)}`);
    }
  }
}

/** What is wrong with an entry's name for its kind (the API's rule), or undefined. */
export function entryNameError(kind: Kind, name: string): string | undefined {
  if (!name) return 'Name is required';
  if (kind === 'proxy-defaults') return name === 'global' ? undefined : `invalid name ("${name}"), only "global" is supported`;
  if (kind === 'mesh') return name === 'mesh' ? undefined : `invalid name ("${name}"), only "mesh" is supported`;
  return NAME.test(name) && name.length <= 128 ? undefined : `invalid name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-'`;
}

/**
 * Decodes and validates one entry as PUT /v1/config takes it. `get` reads the other entries (a router or splitter
 * needs its service to speak an HTTP-family protocol, as Consul checks). Throws CONFIG_ENTRY_INVALID (400).
 */
export function decodeConfigEntry(raw: unknown, get: (kind: Kind, name: string) => ConfigEntry | undefined): ConfigEntryInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('Request decode failed: a config entry is one JSON object');
  const kindField = Object.entries(raw).find(([k]) => k.toLowerCase() === 'kind')?.[1];
  if (typeof kindField !== 'string' || !kindField) throw invalid('Request decode failed: Kind is required, one of ' + KINDS.join(', '));
  const kind = kindField.toLowerCase() as Kind;
  if (!KINDS.includes(kind)) throw invalid(`invalid config entry kind: ${kindField} (supported: ${KINDS.join(', ')})`);
  let e: Rec;
  try {
    e = decodeStruct(raw as Rec, SCHEMAS[kind]);
  } catch (err) {
    if (err instanceof DecodeError) throw invalid(`Request decode failed: ${err.message}`);
    throw err;
  }
  delete e.CreateIndex;
  delete e.ModifyIndex;
  e.Kind = kind;
  if (kind === 'mesh' && (e.Name === undefined || e.Name === '')) e.Name = 'mesh'; // Consul's mesh entry has one fixed name
  const errs: string[] = [];
  const name = typeof e.Name === 'string' ? e.Name : '';
  const nameErr = entryNameError(kind, name);
  if (nameErr) errs.push(nameErr);
  if (e.Namespace !== undefined && e.Namespace !== '' && e.Namespace !== 'default') errs.push('Namespace: only "default" exists here');
  if (kind === 'service-defaults' && e.Protocol !== undefined && !(PROTOCOLS as readonly unknown[]).includes(e.Protocol)) {
    errs.push(`Protocol ${JSON.stringify(e.Protocol)} is not supported: one of ${PROTOCOLS.join(', ')}`);
  }
  if (kind === 'proxy-defaults') {
    const cfg = e.Config;
    if (cfg !== undefined && (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg))) errs.push('Config must be an object');
    const p = (cfg as Rec | undefined)?.protocol;
    if (p !== undefined && !(PROTOCOLS as readonly unknown[]).includes(p)) errs.push(`Config.protocol ${JSON.stringify(p)} is not supported: one of ${PROTOCOLS.join(', ')}`);
  }
  if (kind === 'mesh') validateMesh(e, errs);
  if (kind === 'service-router') validateRouter(e, errs);
  if (kind === 'service-splitter') validateSplitter(e, errs);
  if (kind === 'service-resolver') validateResolver(e, errs);
  if ((kind === 'service-router' || kind === 'service-splitter') && name) {
    const p = protocolOf(name, get);
    if (!L7_PROTOCOLS.includes(p)) {
      errs.push(`service ${JSON.stringify(name)} has protocol ${JSON.stringify(p)}, which does not support routing or splitting: set Protocol "http", "http2" or "grpc" in its service-defaults (or proxy-defaults Config.protocol) first`);
    }
  }
  if (errs.length) throw invalid(multiError(errs));
  return e as ConfigEntryInput;
}

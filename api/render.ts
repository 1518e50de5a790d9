// The JSON shapes Consul 1.8 answers with, built from catalog records.

import type { CheckDefinition, CheckRecord, NodeEntry, ServiceRecord } from '../model/catalog-types.js';
import { formatGoDuration } from '../lib/go-duration.js';

export function renderDefinition(d: CheckDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {
    Interval: formatGoDuration(d.Interval ?? 0),
    Timeout: formatGoDuration(d.Timeout ?? 0),
    DeregisterCriticalServiceAfter: formatGoDuration(d.DeregisterCriticalServiceAfter ?? 0),
    HTTP: d.HTTP ?? '',
    Header: d.Header ?? null,
    Method: d.Method ?? '',
    Body: d.Body ?? '',
    TLSSkipVerify: d.TLSSkipVerify ?? false,
    TCP: d.TCP ?? '',
  };
  if (d.TTL) out.TTL = formatGoDuration(d.TTL);
  if (d.OutputMaxSize) out.OutputMaxSize = d.OutputMaxSize;
  if (d.SuccessBeforePassing) out.SuccessBeforePassing = d.SuccessBeforePassing;
  if (d.FailuresBeforeCritical) out.FailuresBeforeCritical = d.FailuresBeforeCritical;
  if (d.AliasService) out.AliasService = d.AliasService;
  if (d.AliasNode) out.AliasNode = d.AliasNode;
  return out;
}

export function renderCheck(c: CheckRecord): Record<string, unknown> {
  return {
    Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
    ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: c.ServiceTags, Type: c.Type,
    Definition: renderDefinition(c.Definition), CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex,
  };
}

/** /v1/agent/services and /v1/agent/service/:id. */
export function renderAgentService(s: ServiceRecord, datacenter: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.Kind) out.Kind = s.Kind;
  Object.assign(out, { ID: s.ID, Service: s.Service, Tags: s.Tags, Meta: s.Meta, Port: s.Port, Address: s.Address });
  if (s.TaggedAddresses) out.TaggedAddresses = s.TaggedAddresses;
  Object.assign(out, { Weights: s.Weights, EnableTagOverride: s.EnableTagOverride });
  if (s.Proxy) out.Proxy = s.Proxy;
  if (s.Connect) out.Connect = s.Connect;
  out.Datacenter = datacenter;
  return out;
}

const proxyOrEmpty = (s: ServiceRecord) => s.Proxy ?? { MeshGateway: {}, Expose: {} };

/** The Service object inside /v1/health/service entries. */
export function renderHealthService(s: ServiceRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (s.Kind) out.Kind = s.Kind;
  Object.assign(out, { ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address });
  if (s.TaggedAddresses) out.TaggedAddresses = s.TaggedAddresses;
  Object.assign(out, {
    Meta: s.Meta, Port: s.Port, Weights: s.Weights, EnableTagOverride: s.EnableTagOverride,
    Proxy: proxyOrEmpty(s), Connect: s.Connect ?? {}, CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
  });
  return out;
}

export function renderNode(n: NodeEntry): Record<string, unknown> {
  return { ...n.info, CreateIndex: n.createIndex, ModifyIndex: n.modifyIndex };
}

/** Consul's tagged address for a service's virtual IP. */
export const VIRTUAL_IP_TAG = 'consul-virtual';

/** One row of /v1/catalog/service/:name; `vip`: the service's virtual IP, as Consul's `consul-virtual` tagged address. */
export function renderServiceNode(n: NodeEntry, s: ServiceRecord, vip?: string): Record<string, unknown> {
  const tagged = vip ? { ...s.TaggedAddresses, [VIRTUAL_IP_TAG]: { Address: vip, Port: s.Port } } : s.TaggedAddresses;
  return {
    ID: n.info.ID, Node: n.info.Node, Address: n.info.Address, Datacenter: n.info.Datacenter,
    TaggedAddresses: n.info.TaggedAddresses, NodeMeta: n.info.Meta,
    ServiceKind: s.Kind ?? '', ServiceID: s.ID, ServiceName: s.Service, ServiceTags: s.Tags,
    ServiceAddress: s.Address, ...(tagged ? { ServiceTaggedAddresses: tagged } : {}),
    ServiceWeights: s.Weights, ServiceMeta: s.Meta, ServicePort: s.Port,
    ServiceEnableTagOverride: s.EnableTagOverride, ServiceProxy: proxyOrEmpty(s), ServiceConnect: s.Connect ?? {},
    CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
  };
}

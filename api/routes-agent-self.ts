// /v1/agent/{self,ready,members,leave,metrics}, /metrics and /v1/status/*: the agent describing itself.

import { isNodemeshError, NodemeshError } from '../lib/errors.js';
import type { ApiDeps } from './api-deps.js';
import type { Router } from './http-router.js';
import { errorHeader, sendJson, sendText, tokenAllows } from './http-router.js';

/** What stands for a path when the caller has no token. */
const REDACTED = '<redacted: needs the ACL token>';


export function agentSelfRoutes(r: Router, d: ApiDeps): void {
  const node = () => d.catalog.getNode(d.local.nodeName)!.info;

  /** This agent's gossip port as the pool knows it (the configured one before gossip is up). */
  const gossipPort = () => d.members().find((m) => m.Name === node().Node)?.Port ?? d.config.serfLanPort;
  const member = () => ({
    Name: node().Node,
    Addr: node().Address,
    Port: gossipPort(),
    Tags: { role: 'node', dc: d.config.datacenter, build: d.version, vsn: '2', vsn_min: '2', vsn_max: '3' },
    Status: 1,
    ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4,
  });

  r.on('GET', '/v1/agent/self', (ctx) => {
    const c = d.config;
    const trusted = tokenAllows(ctx.req, ctx.query, c.aclToken);
    sendJson(ctx.res, 200, {
      Config: { Datacenter: c.datacenter, NodeName: node().Node, NodeID: node().ID, Revision: '', Server: false, Version: d.version },
      DebugConfig: {
        BindAddr: c.bind, ClientAddrs: [c.client], DataDir: trusted ? c.dataDir : REDACTED, DevMode: c.dev, HTTPPort: c.httpPort,
        LogLevel: c.logLevel, ACLTokenSet: c.aclToken !== undefined,
        CheckReapInterval: `${c.checkReapIntervalMs}ms`, CheckDeregisterIntervalMin: `${c.checkDeregisterIntervalMinMs}ms`,
      },
      Member: member(),
      Meta: node().Meta,
      // Consul's stats are sections of strings (`consul info` prints them with %s).
      Stats: {
        agent: { version: d.version, started: d.startedAt.toISOString(), server: 'false' },
        catalog: Object.fromEntries(Object.entries(d.catalog.counts()).map(([k, v]) => [k, String(v)])),
        serf_lan: { members: String(Math.max(1, d.members().length)), port: String(gossipPort()) },
      },
    });
  });

  // Readiness for probes (a DaemonSet's readinessProbe): 200 once synced with the pool and listening.
  r.on('GET', '/v1/agent/ready', (ctx) => {
    const reasons = d.notReady();
    if (reasons.length) return sendJson(ctx.res, 503, { Ready: false, Reasons: reasons }, errorHeader('AGENT_NOT_READY'));
    sendJson(ctx.res, 200, { Ready: true });
  });

  // nodemesh: what `nodemesh verify` reports.
  r.on('GET', '/v1/agent/posture', (ctx) => {
    // Paths (data dir, key files) only to a caller with the token: they tell an attacker where the keys are.
    const trusted = tokenAllows(ctx.req, ctx.query, d.config.aclToken);
    const findings = trusted ? d.posture() : d.posture().map((f) => ({ ...f, Detail: f.Detail.replace(/(^|[\s(`'"])\/[^\s`'":,)]+/g, `$1${REDACTED}`) }));
    sendJson(ctx.res, 200, { Findings: findings, Failed: findings.filter((f) => f.Status === 'fail').length, Warnings: findings.filter((f) => f.Status === 'warn').length });
  });

  r.on('GET', '/v1/agent/members', (ctx) => {
    // Before gossip is up (a request in the first moments of start-up) the pool is just this agent.
    const pool = d.members();
    sendJson(ctx.res, 200, pool.length ? pool : [member()]);
  });

  r.on('PUT', '/v1/agent/leave', (ctx) => {
    sendText(ctx.res, 200, '');
    ctx.res.once('finish', () => d.leave());
  });

  // Consul's reload: config files read again; services defined there registered, changed or removed.
  r.on('PUT', '/v1/agent/reload', async (ctx) => {
    try {
      await d.reload();
    } catch (e) {
      // A config error carries a process exit status (2); over HTTP it is the caller's bad input.
      if (isNodemeshError(e) && e.code === 'CONFIG_INVALID') throw new NodemeshError('CONFIG_INVALID', `reload refused, the running config is kept: ${e.message}`, 400);
      throw e;
    }
    sendText(ctx.res, 200, '');
  });

  // No servers and no leader in the gossip pool: every agent answers for itself, naming an address it listens on
  // (its gossip port), so a tool that checks for a leader finds one that is really there.
  const leader = () => `${node().Address}:${gossipPort()}`;
  r.on('GET', '/v1/status/leader', (ctx) => sendJson(ctx.res, 200, leader()));
  r.on('GET', '/v1/status/peers', (ctx) => sendJson(ctx.res, 200, [leader()]));

  const prometheus = async (ctx: Parameters<Parameters<Router['on']>[2]>[0]) => {
    const text = await d.metrics.registry.metrics();
    sendText(ctx.res, 200, text, { 'Content-Type': d.metrics.registry.contentType });
  };
  r.on('GET', '/metrics', prometheus);
  r.on('GET', '/v1/agent/metrics', async (ctx) => {
    if (ctx.query.get('format') === 'prometheus') return prometheus(ctx);
    sendJson(ctx.res, 200, { Timestamp: new Date().toISOString(), Metrics: await d.metrics.registry.getMetricsAsJSON() });
  });
}

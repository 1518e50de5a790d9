// /v1/connect/ca/configuration: `consul connect ca get-config` shows the pool's CA as Consul's built-in provider;
// `set-config` replaces this agent's signing CA (a root or an intermediate, given as PEM) when peers already trust its root.

import { NodemeshError } from '../lib/errors.js';
import { decodeBody, type Schema } from '../lib/strict-json.js';
import { decodeOrThrow } from '../model/service-definition.js';
import type { TrustBundle } from '../identity/ca/trust-bundle.js';
import type { ApiDeps } from './api-deps.js';
import { sendJson, sendText, type Router } from './http-router.js';

export interface CaConfigDeps {
  trust: TrustBundle;
  /** This agent's CA replaced by PEM text (GossipBackend.replaceSigningCa). */
  replaceSigningCa(chainPem: string, keyPem: string, force: boolean): Promise<void>;
  /** Whether a token may change the CA: the operator token (Consul: operator:write), as for pool-wide policy. */
  authorize(token: string | undefined): boolean;
}

/** Consul's CAConfiguration: what `get-config` prints is accepted back; only the keys change anything. */
const SCHEMA: Schema = {
  Provider: 'string', ForceWithoutCrossSigning: 'bool',
  Config: { struct: {
    PrivateKey: 'string', RootCert: 'string', LeafCertTTL: 'string', RotationPeriod: 'string', IntermediateCertTTL: 'string',
    PrivateKeyType: 'string', PrivateKeyBits: 'int', CSRMaxPerSecond: 'float', CSRMaxConcurrent: 'int',
  } },
  ClusterID: 'string', State: 'any', CreateIndex: 'any', ModifyIndex: 'any',
};

const hours = (ms: number) => `${Math.round(ms / 3_600_000)}h0m0s`;

export function connectCaConfigRoutes(r: Router, d: ApiDeps, c: CaConfigDeps): void {
  r.on('GET', '/v1/connect/ca/configuration', (ctx) => {
    sendJson(ctx.res, 200, {
      Provider: 'consul', ClusterID: c.trust.trustDomain.replace(/\.consul$/, ''),
      Config: { LeafCertTTL: hours(d.config.leafCertTtlMs), PrivateKeyType: 'ec', PrivateKeyBits: 256, RotationPeriod: '', IntermediateCertTTL: '' },
      State: null, ForceWithoutCrossSigning: false, CreateIndex: 1, ModifyIndex: c.trust.index,
    }, { 'X-Consul-Index': String(Math.max(1, c.trust.index)) });
  });

  r.on('PUT', '/v1/connect/ca/configuration', async (ctx) => {
    const text = await ctx.body();
    const body = decodeOrThrow<{ Provider?: string; ForceWithoutCrossSigning?: boolean; Config?: { PrivateKey?: string; RootCert?: string; LeafCertTTL?: string } }>(
      () => decodeBody(text, SCHEMA));
    if ((body.Provider ?? 'consul') !== 'consul') {
      throw new NodemeshError('API_UNSUPPORTED', `CA provider ${JSON.stringify(body.Provider)} is not supported: nodemesh's pool CA is the built-in ("consul") provider; for Vault or another CA, run with --consul-addr`, 400);
    }
    const cfg = body.Config ?? {};
    if (cfg.LeafCertTTL && cfg.LeafCertTTL !== hours(d.config.leafCertTtlMs)) {
      throw new NodemeshError('API_UNSUPPORTED', `LeafCertTTL is the agent's leaf_cert_ttl (${hours(d.config.leafCertTtlMs)} now): change it in the agent config and reload`, 400);
    }
    if (!cfg.RootCert || !cfg.PrivateKey) {
      throw new NodemeshError('CA_INVALID', 'Config.RootCert and Config.PrivateKey are both needed: nodemesh does not make a new root on an agent (the root key stays with the operator). Give this agent\'s new CA as PEM — a root, or an intermediate followed by its root — and its key; see docs/security.md', 400);
    }
    await c.replaceSigningCa(cfg.RootCert, cfg.PrivateKey, body.ForceWithoutCrossSigning === true);
    d.log.info({ trustDomain: c.trust.trustDomain }, 'CA configuration updated');
    sendText(ctx.res, 200, '');
  }, { authorize: (t) => c.authorize(t) });
}

// Leaf certificates for local services: signed on demand, renewed at a random point in 60–90 % of their life.

import type { Logger } from 'pino';
import type { CertificateAuthority } from './certificate-authority.js';
import { LeafHolder, type Leaf } from './leaf-holder.js';
import { colonHex } from './x509-certs.js';

export interface LeafCertsOptions { datacenter: string; ttlMs: number; log: Logger }

export class LeafCerts extends LeafHolder {
  private readonly signing = new Map<string, Promise<Leaf>>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(private ca: CertificateAuthority, private readonly opts: LeafCertsOptions) {
    super();
  }

  /** Switches to a new signing CA and re-issues every current leaf with it (after any signing in flight). */
  async rotate(ca: CertificateAuthority): Promise<void> {
    this.ca = ca;
    await Promise.allSettled([...this.signing.values()]);
    await Promise.all([...this.leaves.keys()].map((s) => this.sign(s)));
  }

  /** The service's current leaf, signing one if there is none yet. */
  get(service: string): Promise<Leaf> {
    const have = this.leaves.get(service);
    if (have) return Promise.resolve(have);
    return this.sign(service);
  }

  /** Signs a fresh leaf now (renewal, or a forced rotation). */
  sign(service: string): Promise<Leaf> {
    const inflight = this.signing.get(service);
    if (inflight) return inflight;
    const p = (async () => {
      // One CA for the whole leaf: a rotation during the signature must not pair this leaf with the new chain.
      const ca = this.ca;
      const signed = await ca.signService(this.opts.datacenter, service, this.opts.ttlMs);
      const prev = this.leaves.get(service);
      const index = this.nextIndex();
      const leaf: Leaf = {
        Service: service,
        ServiceURI: ca.spiffeId(this.opts.datacenter, service),
        SerialNumber: colonHex(signed.serial),
        CertPEM: [signed.certPem, ...ca.intermediates].join(''),
        PrivateKeyPEM: signed.keyPem,
        ValidAfter: signed.notBefore.toISOString(),
        ValidBefore: signed.notAfter.toISOString(),
        CreateIndex: prev?.CreateIndex ?? index,
        ModifyIndex: index,
      };
      if (this.stopped) return leaf;
      this.scheduleRenewal(service, signed.notBefore, signed.notAfter);
      this.opts.log.info({ service, serial: leaf.SerialNumber, validBefore: leaf.ValidBefore }, prev ? 'leaf certificate renewed' : 'leaf certificate issued');
      this.publish(leaf);
      return leaf;
    })().finally(() => this.signing.delete(service));
    this.signing.set(service, p);
    return p;
  }

  private scheduleRenewal(service: string, notBefore: Date, notAfter: Date): void {
    clearTimeout(this.timers.get(service));
    const life = notAfter.getTime() - notBefore.getTime();
    const at = notBefore.getTime() + life * (0.6 + Math.random() * 0.3);
    // setTimeout holds at most ~24.8 days; longer waits re-arm on the way.
    const delay = Math.min(Math.max(at - Date.now(), 1000), 2 ** 31 - 1);
    const t = setTimeout(() => {
      if (Date.now() + 1000 < at) return this.scheduleRenewal(service, notBefore, notAfter);
      this.renew(service, 30_000);
    }, delay);
    t.unref();
    this.timers.set(service, t);
  }

  /** Renews now; on failure retries with backoff (30 s, doubling, at most 5 min) until a signature succeeds. */
  private renew(service: string, backoffMs: number): void {
    this.sign(service).catch((e: Error) => {
      if (this.stopped || !this.leaves.has(service)) return;
      this.opts.log.error({ service, err: e.message, retryInMs: backoffMs }, 'leaf renewal failed; retrying');
      const t = setTimeout(() => this.renew(service, Math.min(backoffMs * 2, 300_000)), backoffMs);
      t.unref();
      this.timers.set(service, t);
    });
  }

  /** Stops renewing a service's leaf (its last local instance went away). */
  drop(service: string): void {
    clearTimeout(this.timers.get(service));
    this.timers.delete(service);
    this.leaves.delete(service);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.feed.close();
  }
}

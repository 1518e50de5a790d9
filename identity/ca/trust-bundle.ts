// The trust bundle: the active CA, extra trusted roots, and retired roots kept trusted after a rotation until old leaves are gone.

import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ChangeFeed } from '../../lib/change-feed.js';
import { NodemeshError } from '../../lib/errors.js';
import type { CaRoot, CertificateAuthority } from './certificate-authority.js';
import { writePrivate } from '../../lib/private-file.js';
import { certInfo, splitPem } from './x509-certs.js';

interface RetiredRoot { pem: string; keepUntil: string }

export class TrustBundle {
  readonly feed = new ChangeFeed();
  private lastIndex = 1;

  private constructor(
    private active: CertificateAuthority,
    private extra: string[],
    private retired: RetiredRoot[],
    private readonly retiredPath: string,
  ) {}

  /** The bundle for an agent: retired roots come back from the data dir, expired ones are dropped. */
  static open(ca: CertificateAuthority, dataDir: string, extraRootsFile: string | undefined): TrustBundle {
    const path = join(dataDir, 'ca', 'retired-roots.json');
    let retired: RetiredRoot[] = [];
    try {
      retired = JSON.parse(readFileSync(path, 'utf8')) as RetiredRoot[];
    } catch { /* none yet */ }
    const b = new TrustBundle(ca, readExtraRoots(extraRootsFile), retired, path);
    b.prune();
    return b;
  }

  get ca(): CertificateAuthority {
    return this.active;
  }

  get index(): number {
    return this.lastIndex;
  }

  get trustDomain(): string {
    return this.active.trustDomain;
  }

  /** Every root a peer's chain may end in. */
  pems(): string[] {
    const now = Date.now();
    const all = [...this.active.rootPems, ...this.extra, ...this.retired.filter((r) => Date.parse(r.keepUntil) > now).map((r) => r.pem)];
    return [...new Set(all)];
  }

  /**
   * Makes `next` the signing CA. The old roots stay trusted for `keepMs` (the longest an old leaf can
   * live), so peers still presenting leaves of the old root keep working while everyone re-issues.
   */
  rotate(next: CertificateAuthority, extraRootsFile: string | undefined, keepMs: number): void {
    const keepUntil = new Date(Date.now() + keepMs).toISOString();
    for (const pem of this.active.rootPems) {
      if (!next.rootPems.includes(pem) && !this.retired.some((r) => r.pem === pem)) this.retired.push({ pem, keepUntil });
    }
    this.active = next;
    this.extra = readExtraRoots(extraRootsFile);
    this.prune();
    this.changed();
  }

  /** Re-reads the extra trusted roots (config reload without a CA change). */
  setExtraRoots(file: string | undefined): void {
    const extra = readExtraRoots(file);
    if (extra.join() === this.extra.join()) return;
    this.extra = extra;
    this.changed();
  }

  private changed(): void {
    this.lastIndex++;
    mkdirSync(dirname(this.retiredPath), { recursive: true, mode: 0o700 });
    writePrivate(this.retiredPath, JSON.stringify(this.retired));
    this.feed.notify();
  }

  private expiry?: NodeJS.Timeout;

  /** Drops expired retired roots, and arms a timer for the next one so a running agent stops trusting it on time. */
  private prune(): void {
    const now = Date.now();
    this.retired = this.retired.filter((r) => Date.parse(r.keepUntil) > now && !this.active.rootPems.includes(r.pem));
    clearTimeout(this.expiry);
    const next = Math.min(...this.retired.map((r) => Date.parse(r.keepUntil)));
    if (Number.isFinite(next)) {
      this.expiry = setTimeout(() => {
        this.prune();
        this.changed();
      }, Math.min(Math.max(next - now, 0) + 1000, 2 ** 31 - 1));
      this.expiry.unref();
    }
  }

  stop(): void {
    clearTimeout(this.expiry);
  }

  /** Consul's /v1/agent/connect/ca/roots shape: the active root first, then the others, inactive. */
  rootsView(): { ActiveRootID: string; TrustDomain: string; Roots: CaRoot[] } {
    const view = this.active.rootsView(this.lastIndex);
    const known = new Set(view.Roots.map((r) => r.RootCert));
    for (const pem of this.pems()) {
      if (known.has(pem)) continue;
      const info = certInfo(pem);
      view.Roots.push({
        ID: info.sha1, Name: 'Consul CA Root Cert', SerialNumber: Number.parseInt(info.serial.slice(-12), 16),
        SigningKeyID: info.ski, ExternalTrustDomain: view.TrustDomain, NotBefore: info.notBefore.toISOString(),
        NotAfter: info.notAfter.toISOString(), RootCert: pem, IntermediateCerts: null, Active: false,
        PrivateKeyType: 'ec', PrivateKeyBits: 256, CreateIndex: this.lastIndex, ModifyIndex: this.lastIndex,
      });
    }
    return view;
  }
}

function readExtraRoots(file: string | undefined): string[] {
  if (!file) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new NodemeshError('CA_INVALID', `cannot read ca_trusted_roots_file: ${(e as Error).message}`, 2);
  }
  const pems = splitPem(text);
  if (pems.length === 0) throw new NodemeshError('CA_INVALID', `ca_trusted_roots_file ${file} holds no PEM certificate`, 2);
  for (const p of pems) {
    try {
      if (!certInfo(p).isCa) throw new NodemeshError('CA_INVALID', 'not a CA certificate', 2);
    } catch (e) {
      throw new NodemeshError('CA_INVALID', `ca_trusted_roots_file ${file}: ${(e as Error).message}`, 2);
    }
  }
  return pems;
}

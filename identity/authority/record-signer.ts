// Signing what this agent originates: a key and the certificate chain that says what it is an authority for.

import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';

/** A signature over a body: `by` is the signing certificate's SHA-256 fingerprint (hex), `sig` ECDSA P-1363 in base64. */
export interface Seal { by: string; sig: string }

/** A body as its author signed it: relayed byte for byte, so every hop can check it. */
export interface SignedBlob extends Seal { body: string }

/** The SHA-256 fingerprint of a certificate (DER), lower-case hex: how a seal names its signer. */
export const fingerprintOf = (der: Buffer) => createHash('sha256').update(der).digest('hex');

export class RecordSigner {
  readonly by: string;
  /** The signing certificate then its intermediates (not the root), base64 DER: what a verifier needs to learn it. */
  readonly chain: string[];

  /** `chainPems`: the signing certificate first, then up to a root (the root itself when it signs). */
  constructor(private readonly key: KeyObject, chainPems: string[]) {
    const certs = chainPems.map((p) => new X509Certificate(p));
    const own = certs.filter((c, i) => i === 0 || !(c.checkIssued(c) && c.verify(c.publicKey)));
    this.chain = own.map((c) => c.raw.toString('base64'));
    this.by = fingerprintOf(certs[0].raw);
  }

  seal(body: string): Seal {
    return { by: this.by, sig: sign('sha256', Buffer.from(body), { key: this.key, dsaEncoding: 'ieee-p1363' }).toString('base64') };
  }

  signBlob(body: string): SignedBlob {
    return { body, ...this.seal(body) };
  }
}

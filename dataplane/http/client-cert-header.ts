// X-Forwarded-Client-Cert: the verified peer's identity handed to the app in Envoy's format, and its removal from anything a caller sent.

import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';

/** The header's name as Node reports it (lower case); any spelling a caller used arrives under it. */
export const XFCC = 'x-forwarded-client-cert';

/** Envoy's XFCC element with By, Hash and URI: `By=<own SPIFFE URI>;Hash=<hex sha256 of the peer leaf DER>;URI=<peer SPIFFE URI>`. */
export function xfccValue(by: string, peerLeafDer: Buffer, peerUri: string): string {
  return `By=${by};Hash=${createHash('sha256').update(peerLeafDer).digest('hex')};URI=${peerUri}`;
}

/** Drops every spelling of the header from headers about to be forwarded. */
export function stripXfcc(headers: OutgoingHttpHeaders | Record<string, unknown>): void {
  for (const k of Object.keys(headers)) if (k.toLowerCase() === XFCC) delete headers[k];
}

/** For raw header lists (name, value, name, value…): whether the name at `i` is the header. */
export const isXfcc = (name: string) => name.toLowerCase() === XFCC;

// Comparing a presented secret (an API or operator token) with the configured one in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';

/** Whether two secrets are equal, without leaking where they differ (both are hashed to one length first). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

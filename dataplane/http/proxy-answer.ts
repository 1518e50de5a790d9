// An answer the mesh itself gives a caller (429, 503, 504 …) instead of the instance's, with the code it is known by.

import type { ErrorCode } from '../../lib/error-codes.js';

/** What the caller gets when the mesh itself answers; `code` goes out as X-Nodemesh-Error. */
export class ProxyAnswer extends Error {
  constructor(readonly status: number, message: string, readonly code: ErrorCode) {
    super(message);
  }
}

// An answer the mesh itself gives a caller (429, 503, 504 …) instead of the instance's.

/** What the caller gets when the mesh itself answers. */
export class ProxyAnswer extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

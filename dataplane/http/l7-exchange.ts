// One L7 request as the upstream pipeline sees it, whichever front end (HTTP/1.1 or HTTP/2) it came in on, and what a transport to an instance returns.

import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { ErrorCode } from '../../lib/error-codes.js';

/** A request from the workload, read by a front end. */
export interface Exchange {
  readonly method: string;
  /** The request target as sent (normalized by the pipeline). */
  readonly target: string;
  /** Request headers without pseudo-headers; `host` holds HTTP/2's :authority. */
  readonly headers: IncomingHttpHeaders;
  /** The caller's address (source-IP hashing). */
  readonly remoteAddress: string | undefined;
  /** A gRPC call: local answers go out as grpc-status. */
  readonly grpc: boolean;
  /** Known to carry no body. */
  readonly empty: boolean;
  /** The whole body when it is at most `limit` bytes and ends without waiting on the caller; otherwise undefined (it streams). */
  readBody(limit: number): Promise<Buffer | undefined>;
  /** The body to stream when it was not read whole (what readBody already took comes first). */
  body(): Readable;
  /** The mesh's own answer (an error): status, message, and the code it is known by. */
  answer(status: number, message: string, code: ErrorCode): void;
  /** Streams an instance's answer back; resolves when it is done (or the caller went away). */
  respond(up: UpstreamAnswer): Promise<void>;
}

/** An instance's answer: its head now, the body (and HTTP/2 trailers) as they come. */
export interface UpstreamAnswer {
  status: number;
  /** The status retries and outlier detection go by: a gRPC error's grpc-status read as the HTTP code it stands for. */
  effective: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** The answer ended with its headers (a trailers-only gRPC answer). */
  endAfterHeaders: boolean;
  /** Trailers, once the body has ended (HTTP/2); none on HTTP/1.1. */
  trailers(): IncomingHttpHeaders | undefined;
  /** Drops the answer (a retry goes elsewhere). */
  discard(): void;
}

/** What goes to an instance: method, path (rewritten, normalized), headers (hop-by-hop dropped), and the body. */
export interface OutgoingRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer | Readable;
}

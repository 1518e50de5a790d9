// Policy writes between agents: a policy writer's TLS listener for forwarded writes, and the forwarding client other agents use.

import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { NodemeshError, isNodemeshError, type ErrorCode } from '../../lib/errors.js';
import { isErrorCode } from '../../lib/error-codes.js';
import { parseAuthorityUri } from '../../identity/authority-ids.js';
import type { TrustSource } from '../../identity/trust-sources.js';
import { uriSans } from '../../identity/spiffe/spiffe-id.js';
import { TLS_SETTINGS } from '../../identity/tls-identity.js';
import type { PolicyCredential } from '../../identity/authority/pool-authority.js';
import type { PolicyOp, PolicyResult, PolicyWrites } from './policy-writes.js';
import { listenServer } from '../../lib/listen-server.js';

export const POLICY_WRITE_PATH = '/v1/nodemesh/policy-write';
const MAX_BODY = 1024 * 1024;
const OPS = new Set(['intention.create', 'intention.update', 'intention.delete', 'entry.write', 'entry.delete']);

interface WireAnswer { result?: unknown; records?: PolicyResult['records']; error?: { code: string; message: string } }

/** A policy writer's listener for writes other agents forward: TLS with its policy credential; the operator token decides. */
export async function startPolicyEndpoint(opts: { bind: string; port: number; credential: PolicyCredential; writes: PolicyWrites; log: Logger }): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer({ ...TLS_SETTINGS, cert: opts.credential.certChainPem, key: opts.credential.keyPem, requestTimeout: 15_000, headersTimeout: 10_000 }, (req, res) => {
    const answer = (status: number, body: WireAnswer) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    const fail = (status: number, code: ErrorCode, message: string) => answer(status, { error: { code, message } });
    if (req.method !== 'POST' || req.url !== POLICY_WRITE_PATH) return fail(404, 'POLICY_ENDPOINT_NOT_FOUND', 'not a policy write');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        fail(413, 'POLICY_WRITE_TOO_LARGE', 'a forwarded write is at most 1 MiB');
        req.destroy();
      } else chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (size > MAX_BODY) return;
      let msg: { op?: PolicyOp; token?: unknown };
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof msg;
      } catch {
        return fail(400, 'POLICY_WRITE_MALFORMED', 'a forwarded write is one JSON object');
      }
      if (typeof msg !== 'object' || msg === null || typeof msg.op !== 'object' || msg.op === null || !OPS.has(msg.op.op) || (msg.token !== undefined && typeof msg.token !== 'string')) {
        return fail(400, 'POLICY_WRITE_MALFORMED', 'a forwarded write names one known operation');
      }
      opts.writes.apply(msg.op, msg.token as string | undefined).then(
        (r) => answer(200, { result: r.result, records: r.records }),
        (e: Error) => {
          if (isNodemeshError(e)) return fail(e.status, e.code, e.message);
          opts.log.error({ err: e.message }, 'forwarded policy write failed');
          return fail(500, 'POLICY_WRITE_FAILED', e.message);
        },
      );
    });
  });
  server.on('tlsClientError', () => undefined);
  await listenServer(server, opts.port, opts.bind).catch((e: NodeJS.ErrnoException) => {
    throw new NodemeshError('POLICY_LISTEN_FAILED', `cannot listen for forwarded policy writes on ${opts.bind}:${opts.port}: ${e.code ?? e.message} (pick another policy_port)`, 1);
  });
  server.on('error', (e) => opts.log.error({ err: e.message }, 'policy endpoint error'));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}

export interface PolicyWriter { name: string; addr: string; port: number }

/**
 * An agent without a policy key forwards each policy write to a policy writer (Consul's client → server), verifying
 * that the listener holds a policy credential of the pool before the token goes out; the signed records the writer
 * answers with are taken here at once (checked like any replicated record).
 */
export class ForwardedPolicyWrites implements PolicyWrites {
  readonly mode = 'forward' as const;

  constructor(
    private readonly writers: () => PolicyWriter[],
    private readonly trust: TrustSource,
    /** Takes the writer's signed records (its chain first, learned from the TLS handshake). */
    private readonly take: (records: PolicyResult['records'], writerChain: string[]) => void,
    private readonly log: Logger,
  ) {}

  tokenAllows(): boolean {
    return true; // the policy writer checks the operator token
  }

  async apply(op: PolicyOp, token: string | undefined): Promise<PolicyResult> {
    const writers = this.writers().sort(() => Math.random() - 0.5);
    if (writers.length === 0) {
      throw new NodemeshError('POLICY_NO_WRITER', 'no policy writer in the pool: nothing changed. Start an agent with policy_cert_file/policy_key_file (`nodemesh ca issue-policy`), or write on an agent that holds the root key', 503);
    }
    const tried: string[] = [];
    for (const w of writers) {
      let answer: { status: number; body: WireAnswer; chain: string[] };
      try {
        answer = await this.post(w, { op, token });
      } catch (e) {
        tried.push(`${w.name} (${w.addr}:${w.port}): ${(e as Error).message}`);
        this.log.warn({ writer: w.name, err: (e as Error).message }, 'policy writer unreachable or not a policy authority: trying the next');
        continue;
      }
      if (answer.body.error || answer.status !== 200) {
        const err = answer.body.error ?? { code: 'POLICY_WRITE_FAILED', message: `policy writer answered ${answer.status}` };
        // The code came over the wire: one this agent does not know (a newer writer's) goes on as POLICY_WRITE_FAILED.
        throw new NodemeshError(isErrorCode(err.code) ? err.code : 'POLICY_WRITE_FAILED', err.message, answer.status);
      }
      const records = Array.isArray(answer.body.records) ? answer.body.records : [];
      this.take(records, answer.chain);
      return { result: answer.body.result, records };
    }
    throw new NodemeshError('POLICY_WRITER_UNREACHABLE', `no policy writer answered, nothing changed: ${tried.join('; ')}. Retry, or write on a policy writer`, 503);
  }

  private post(w: PolicyWriter, msg: unknown): Promise<{ status: number; body: WireAnswer; chain: string[] }> {
    const text = JSON.stringify(msg);
    const td = this.trust.trustDomain;
    return new Promise((resolve, reject) => {
      const req = request({
        host: w.addr, port: w.port, method: 'POST', path: POLICY_WRITE_PATH, ...TLS_SETTINGS, ca: this.trust.pems(), timeout: 10_000, agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
        // The token goes only to a holder of a policy credential of this pool.
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const uris = uriSans(cert.subjectaltname);
          const a = uris.length === 1 ? parseAuthorityUri(uris[0]) : undefined;
          return a?.kind === 'policy' && a.trustDomain === td ? undefined : new Error(`not a policy writer of this pool (${uris.join(', ') || 'no URI'})`);
        },
      }, (res) => {
        const chain: string[] = [];
        let c: DetailedPeerCertificate | undefined = (res.socket as TLSSocket).getPeerCertificate(true);
        for (let i = 0; c?.raw && i < 4; i++) {
          chain.push(c.raw.toString('base64'));
          if (!c.issuerCertificate || c.issuerCertificate === c || c.issuerCertificate.fingerprint256 === c.fingerprint256) break;
          c = c.issuerCertificate;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => { size += d.length; if (size <= 4 * MAX_BODY) chunks.push(d); else req.destroy(new Error('answer too large')); });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as WireAnswer, chain });
          } catch {
            reject(new Error('unparsable answer'));
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(text);
    });
  }
}

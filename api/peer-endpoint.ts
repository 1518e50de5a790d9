// The agents' own mTLS endpoint: each agent serves its edges' last minute to the pool's agents, and asks its peers for
// theirs, so any agent can answer for the whole pool (GET /v1/pool/edges). Both sides show an agent certificate their
// node's authority signed; a peer's answer is read as strictly as an API body.

import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { NodemeshError } from '../lib/errors.js';
import { listenServer } from '../lib/listen-server.js';
import { agentOf } from '../identity/agent-peer.js';
import type { PeerCredential } from '../identity/ca/agent-credential.js';
import { TLS_SETTINGS } from '../identity/tls-identity.js';
import { readEdgeSummaries, type EdgeSummary } from '../dataplane/metrics/edge-stats.js';

export const PEER_EDGES_PATH = '/v1/nodemesh/edges';
/** A peer's answer is at most this long: 4096 edges of a few hundred bytes fit. */
const MAX_ANSWER = 4 * 1024 * 1024;

const tlsOf = (c: PeerCredential) => ({ ...TLS_SETTINGS, cert: c.certPem, key: c.keyPem, ca: c.roots });

export interface PeerEndpoint {
  port: number;
  /** New handshakes take the credential as it is now (renewed, or re-signed under a new CA). */
  refresh(): void;
  close(): Promise<void>;
}

export async function startPeerEndpoint(o: {
  bind: string; port: number; credential: () => PeerCredential; isMember(node: string): boolean; edges(): EdgeSummary[]; log: Logger;
}): Promise<PeerEndpoint> {
  const server: Server = createServer({ ...tlsOf(o.credential()), requestCert: true, rejectUnauthorized: true, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const fail = (status: number, text: string) => res.writeHead(status, { 'Content-Type': 'text/plain' }).end(`${text}\n`);
    const cred = o.credential();
    const peer = agentOf((req.socket as TLSSocket).getPeerCertificate(true), cred.trustDomain, cred.roots);
    if ('refused' in peer) return fail(403, `not an agent of this pool: ${peer.refused}`);
    if (!o.isMember(peer.node)) return fail(403, `${peer.node} is not a member of the pool`);
    if (req.method !== 'GET' || req.url !== PEER_EDGES_PATH) return fail(404, 'the peer endpoint serves GET /v1/nodemesh/edges');
    const body = JSON.stringify(o.edges());
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
  });
  server.on('tlsClientError', (e) => o.log.debug({ err: e.message }, 'peer endpoint: handshake refused'));
  await listenServer(server, o.port, o.bind).catch((e: NodeJS.ErrnoException) => {
    throw new NodemeshError('PEER_LISTEN_FAILED', `cannot listen for peers on ${o.bind}:${o.port}: ${e.code ?? e.message} (pick another --peer-port, or -1 to turn the pool view off)`, 1);
  });
  return {
    port: (server.address() as AddressInfo).port,
    refresh: () => server.setSecureContext(tlsOf(o.credential())),
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

/**
 * A peer agent's edges: mutual TLS, the answer accepted only from the agent of `node` (its certificate names it and is
 * signed by its node's authority), at most MAX_ANSWER bytes, every edge checked. Rejects with a reason.
 */
export function fetchPeerEdges(peer: { node: string; addr: string; port: number }, cred: PeerCredential, timeoutMs = 2000): Promise<EdgeSummary[]> {
  return new Promise((resolve, reject) => {
    const req = request({
      ...tlsOf(cred), host: peer.addr, port: peer.port, path: PEER_EDGES_PATH, method: 'GET', agent: false, timeout: timeoutMs,
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const who = agentOf(cert, cred.trustDomain, cred.roots);
        if ('refused' in who) return new Error(who.refused);
        return who.node === peer.node ? undefined : new Error(`answered by the agent of ${who.node}, not of ${peer.node}`);
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER) req.destroy(new Error(`answer over ${MAX_ANSWER} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').trim().slice(0, 200)}`));
        try {
          resolve(readEdgeSummaries(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
        } catch (e) {
          reject(new Error(`a malformed answer: ${(e as Error).message}`));
        }
      });
      res.on('error', reject);
    });
    // A deadline for the whole answer: the socket timeout alone would let a peer trickle a byte now and then forever.
    const deadline = setTimeout(() => req.destroy(new Error(`no whole answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

// Outbound tunnels: one pooled mTLS connection per (source identity, destination, destination agent listener), streams opened on it.

import { connect } from 'node:net';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { isNodemeshError, NodemeshError } from '../../lib/errors.js';
import { sourceAddressFor } from '../../lib/source-address.js';
import type { ServiceTls } from '../../identity/tls-identity.js';
import { TUNNEL_ALPN } from './tunnel-frames.js';
import { TunnelSession, type TunnelStream } from './tunnel-session.js';

export interface Endpoint { host: string; port: number }

/** A peer that did not take the tunnel (a Consul proxy, an older agent) gets per-connection mTLS for this long. */
const NO_TUNNEL_FOR_MS = 5 * 60_000;
const IDLE_CLOSE_MS = 60_000;

interface Pooled { ctx: SecureContext; session: Promise<TunnelSession | undefined> }

export class TunnelPool {
  private readonly tunnels = new Map<string, Pooled>();
  private readonly noTunnel = new Map<string, number>();
  private readonly retired = new Set<TunnelSession>();
  /** mTLS connections of their own, to peers without the tunnel (or with it turned off). */
  private readonly direct = new Set<TLSSocket>();
  private readonly reaper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly tls: ServiceTls,
    private readonly log: Logger,
    private readonly onHandshake: (source: string, destination: string, seconds: number) => void,
    /** false: every connection gets its own mTLS handshake (no tunnel offered). */
    private readonly enabled = true,
    /** The agent's bind address: tunnels leave from it (see sourceAddressFor). */
    private readonly bind?: string,
  ) {
    this.reaper = setInterval(() => this.reapIdle(), IDLE_CLOSE_MS / 2);
    this.reaper.unref();
  }

  /**
   * A connection to `destination` at `ep` as `source`: a stream on the pooled tunnel, or a TLS socket of
   * its own when the peer does not speak the tunnel. Rejects when the peer cannot be reached.
   */
  async open(ep: Endpoint, source: string, destination: string, timeoutMs: number): Promise<TunnelStream | TLSSocket> {
    const ctx = await this.tls.context(source);
    const key = `${source}\0${destination}\0${ep.host}:${ep.port}`;
    if (!this.enabled || (this.noTunnel.get(key) ?? 0) > Date.now()) return this.handshake(ep, ctx, source, destination, timeoutMs, false);
    if (this.closed) throw new NodemeshError('DATAPLANE_STOPPING', 'data plane stopping', 503);
    for (let attempt = 0; attempt < 2; attempt++) {
      let pooled = this.tunnels.get(key);
      // A new leaf or trust bundle: new streams go on a new tunnel; the old one closes when its streams end.
      if (pooled && pooled.ctx !== ctx) {
        this.tunnels.delete(key);
        void pooled.session.then((s) => s && this.retire(s), () => undefined);
        pooled = undefined;
      }
      if (!pooled) {
        const session: Promise<TunnelSession | undefined> = this.handshake(ep, ctx, source, destination, timeoutMs, true).then((sock) => {
          if (sock.alpnProtocol === TUNNEL_ALPN) {
            const t: TunnelSession = new TunnelSession(sock, 'client', undefined, (err) => {
              if (this.tunnels.get(key)?.session === session) this.tunnels.delete(key);
              this.retired.delete(t);
              if (err) this.log.debug({ source, destination, endpoint: `${ep.host}:${ep.port}`, err: err.message }, 'tunnel closed');
            });
            return t;
          }
          sock.destroy();
          this.noTunnel.set(key, Date.now() + NO_TUNNEL_FOR_MS);
          this.log.info({ source, destination, endpoint: `${ep.host}:${ep.port}` }, 'peer does not speak the nodemesh tunnel: one mTLS connection per connection');
          return undefined;
        }, (e: Error) => {
          if (this.tunnels.get(key)?.session === session) this.tunnels.delete(key);
          throw e;
        });
        pooled = { ctx, session };
        this.tunnels.set(key, pooled);
      }
      const s = await pooled.session;
      if (!s) return this.handshake(ep, ctx, source, destination, timeoutMs, false);
      if (!s.closed && !s.full) return this.opened(s, s.open(), timeoutMs);
      // Closed, or out of streams or ids: a fresh tunnel; a full one drains and closes when its streams end.
      if (this.tunnels.get(key) === pooled) {
        this.tunnels.delete(key);
        if (!s.closed) this.retire(s);
      }
    }
    throw new NodemeshError('TUNNEL_CLOSED', 'tunnel closed while opening a stream', 502);
  }

  /**
   * A stream counts as dialled once the peer acknowledges it. A peer that does not answer in time is
   * taken for dead (its tunnel closes) and one that refuses (draining, full) fails the dial, so the
   * caller moves on to another instance, as with a failed TCP connect.
   */
  private async opened(s: TunnelSession, stream: TunnelStream, timeoutMs: number): Promise<TunnelStream> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([stream.acknowledged(), new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new NodemeshError('TUNNEL_PEER_TIMEOUT', `tunnel peer did not answer within ${timeoutMs}ms`, 504)), timeoutMs);
      })]);
      return stream;
    } catch (e) {
      stream.destroy();
      if (isNodemeshError(e) && e.code === 'TUNNEL_PEER_TIMEOUT') s.close(e);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Closes every tunnel and direct connection to `host` (a node the pool declared failed): their streams would otherwise hang until TCP
   * gives up, and with them the callers' connections; closed, the callers reconnect to live instances.
   */
  closeTo(host: string, reason: string): void {
    const close = (s: TunnelSession | undefined) => {
      if (s && !s.closed && s.socket.remoteAddress === host) s.close(new Error(reason));
    };
    for (const p of this.tunnels.values()) void p.session.then(close, () => undefined);
    for (const s of this.retired) close(s);
    for (const s of this.direct) if (s.remoteAddress === host) s.destroy(new Error(reason));
  }

  private retire(s: TunnelSession): void {
    if (s.streamCount === 0) s.close();
    else this.retired.add(s);
  }

  private reapIdle(): void {
    const now = Date.now();
    for (const [key, p] of this.tunnels) {
      void p.session.then((s) => {
        if (s && s.streamCount === 0 && s.idleSince > 0 && now - s.idleSince > IDLE_CLOSE_MS && this.tunnels.get(key) === p) {
          this.tunnels.delete(key);
          s.close();
        }
      }, () => undefined);
    }
    for (const s of this.retired) if (s.streamCount === 0) s.close();
  }

  /** Open tunnels (for tests and metrics). */
  async count(): Promise<number> {
    let n = 0;
    for (const p of this.tunnels.values()) if (await p.session.catch(() => undefined)) n++;
    return n;
  }

  private handshake(ep: Endpoint, secureContext: SecureContext, source: string, destination: string, timeoutMs: number, tunnel: boolean): Promise<TLSSocket> {
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      // A plain socket first, so the TLS socket inherits allowHalfOpen and the connect timeout covers both steps.
      const raw = connect({ host: ep.host, port: ep.port, allowHalfOpen: true, localAddress: sourceAddressFor(this.bind, ep.host) });
      const s = tlsConnect({
        socket: raw, secureContext, checkServerIdentity: this.tls.serverCheck(destination, source),
        ...(tunnel ? { ALPNProtocols: [TUNNEL_ALPN] } : {}),
      });
      const timer = setTimeout(() => fail(new Error(`connect timeout after ${timeoutMs}ms`)), timeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        s.destroy();
        raw.destroy();
        reject(e);
      };
      raw.once('error', fail);
      s.once('error', fail);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        raw.off('error', fail);
        s.off('error', fail);
        this.onHandshake(source, destination, Number(process.hrtime.bigint() - started) / 1e9);
        // A connection of its own (no tunnel): kept track of, so a failed node's can be closed too.
        if (!tunnel) {
          this.direct.add(s);
          s.once('close', () => this.direct.delete(s));
        }
        resolve(s);
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.reaper);
    for (const p of this.tunnels.values()) void p.session.then((s) => s?.close(), () => undefined);
    for (const s of this.retired) s.close();
    this.tunnels.clear();
  }
}

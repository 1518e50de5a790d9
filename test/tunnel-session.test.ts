// Tunnel sessions (dataplane/tunnel/tunnel-session.ts): a client and a server session joined by a loopback TCP pair on 127.0.191.1 — streams, half-close, flow control past the window, reset, GOAWAY, and hostile frames from a raw peer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { FrameParser, FrameType, header } from '../dataplane/tunnel/tunnel-frames.js';
import { TunnelSession, type TunnelStream } from '../dataplane/tunnel/tunnel-session.js';
import { NodemeshError } from '../lib/errors.js';
import { sleep } from './helpers/wait-for.js';

const HOST = '127.0.191.1';
/** The stream window, as tunnel-session.ts states it (INITIAL_WINDOW). */
const WINDOW = 4 * 1024 * 1024;

/** Two connected TCP sockets on loopback: [the connecting side, the accepted side]. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  server.listen(0, HOST);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, HOST);
  await once(client, 'connect');
  const [peer] = await accepted;
  server.close();
  return [client, peer];
}

const asTls = (s: Socket) => s as unknown as TLSSocket;

/** Polls a condition until it holds, bounded (a wait, never a timing assertion). */
async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`still not so after ${timeoutMs} ms: ${what}`);
    await sleep(5);
  }
}

interface Pair {
  cli: TunnelSession;
  srv: TunnelSession;
  /** Streams the server was told of, in order. */
  accepted: TunnelStream[];
  closes: { client: (Error | undefined)[]; server: (Error | undefined)[] };
  done(): void;
}

/** A client session and a server session over one connection. */
async function sessions(onStream?: (s: TunnelStream) => void): Promise<Pair> {
  const [c, s] = await socketPair();
  const accepted: TunnelStream[] = [];
  const closes = { client: [] as (Error | undefined)[], server: [] as (Error | undefined)[] };
  const srv = new TunnelSession(asTls(s), 'server', (st) => { accepted.push(st); onStream?.(st); }, (e) => closes.server.push(e));
  const cli = new TunnelSession(asTls(c), 'client', undefined, (e) => closes.client.push(e));
  return { cli, srv, accepted, closes, done: () => { cli.close(); srv.close(); } };
}

/** Opens a client stream and waits for the server's ACK; returns both ends. */
async function openStream(p: Pair): Promise<{ c: TunnelStream; s: TunnelStream }> {
  const c = p.cli.open();
  await c.acknowledged();
  const s = p.accepted.find((x) => x.id === c.id);
  assert.ok(s, `the server has stream ${c.id}`);
  return { c, s };
}

/** Everything a stream delivers until its end (read with events: an async iterator would destroy the stream at the end). */
function readAll(s: TunnelStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('close', () => reject(new Error(`stream ${s.id} closed before its end`)));
  });
}

/** The error a stream is destroyed with (its 'error' event), or undefined if it closes cleanly. */
function closeOf(s: TunnelStream): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let err: Error | undefined;
    s.on('error', (e) => { err = e; });
    if (s.closed) resolve(s.errored ?? undefined);
    else s.once('close', () => resolve(err));
  });
}

/** A raw peer: a plain socket that writes frames by hand and parses what the session sends. */
function rawPeer(sock: Socket): { send: (...frames: Buffer[]) => void; got: { type: FrameType; id: number; payload: Buffer }[]; closed: Promise<void> } {
  const got: { type: FrameType; id: number; payload: Buffer }[] = [];
  const parser = new FrameParser({
    control: (type, id, payload) => got.push({ type, id, payload: Buffer.from(payload) }),
    data: (id, slice) => got.push({ type: FrameType.Data, id, payload: Buffer.from(slice) }),
  });
  sock.on('data', (c: Buffer) => { try { parser.push(c); } catch { /* the test looks at what parsed */ } });
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return { send: (...frames) => { if (!sock.destroyed) sock.write(Buffer.concat(frames)); }, got, closed };
}

const frame = (type: FrameType, id: number, payload?: Buffer | string) => {
  const p = payload === undefined ? Buffer.alloc(0) : Buffer.from(payload);
  return Buffer.concat([header(type, id, p.length), p]);
};

const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n, 0); return b; };

/** A server session fed by a raw client socket. */
async function rawClientToServer(onStream?: (s: TunnelStream) => void) {
  const [c, s] = await socketPair();
  const errors: (Error | undefined)[] = [];
  const streams: TunnelStream[] = [];
  const srv = new TunnelSession(asTls(s), 'server', (st) => { streams.push(st); onStream?.(st); }, (e) => errors.push(e));
  return { srv, peer: rawPeer(c), errors, streams, sock: c };
}

/** A client session fed by a raw server socket. */
async function rawServerToClient() {
  const [c, s] = await socketPair();
  const errors: (Error | undefined)[] = [];
  const cli = new TunnelSession(asTls(c), 'client', undefined, (e) => errors.push(e));
  return { cli, peer: rawPeer(s), errors, sock: s };
}

const isProtocolError = (e: Error | undefined, re: RegExp) => e instanceof NodemeshError && e.code === 'TUNNEL_PROTOCOL' && re.test(e.message);

// ---------------------------------------------------------------- opening streams

test('the client opens streams with odd, increasing ids; the server is told of each and acknowledges it', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const a = p.cli.open();
  const b = p.cli.open();
  const c = p.cli.open();
  assert.deepEqual([a.id, b.id, c.id], [1, 3, 5]);
  await Promise.all([a.acknowledged(), b.acknowledged(), c.acknowledged()]);
  assert.deepEqual(p.accepted.map((s) => s.id), [1, 3, 5]);
  assert.equal(p.cli.streamCount, 3);
  assert.equal(p.srv.streamCount, 3);
  assert.equal(p.cli.idleSince, 0, 'not idle while streams are open');
  assert.throws(() => p.srv.open(), (e: Error) => isProtocolError(e, /cannot open a stream/), 'only the client opens streams');
});

test('a stream has the socket methods node:http\'s Agent calls, as harmless no-ops', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c } = await openStream(p);
  assert.equal(c.setNoDelay(), c);
  assert.equal(c.setKeepAlive(), c);
  assert.equal(c.ref(), c);
  assert.equal(c.unref(), c);
});

test('acknowledged() rejects for a stream closed before the peer answered', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const c = p.cli.open();
  c.destroy();
  await assert.rejects(c.acknowledged(), /closed before the peer answered/);
});

// ---------------------------------------------------------------- data and half-close

test('data flows both ways; each side\'s half-close ends only its own direction', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  c.end('ping from the client');
  assert.equal((await readAll(s)).toString(), 'ping from the client', 'the server reads to the client\'s FIN');
  assert.equal(s.writable, true, 'and can still answer');
  s.end('pong from the server');
  assert.equal((await readAll(c)).toString(), 'pong from the server');
  await Promise.all([c.closed ? undefined : once(c, 'close'), s.closed ? undefined : once(s, 'close')]);
  assert.equal(c.errored, null);
  assert.equal(s.errored, null);
  await until('no streams left on either side', () => p.srv.streamCount + p.cli.streamCount === 0);
  assert.ok(p.cli.idleSince > 0 && p.srv.idleSince > 0, 'both sessions note when they became idle');
  assert.equal(c.bytesRead, 'pong from the server'.length);
  assert.equal(s.bytesRead, 'ping from the client'.length);
});

test('many streams at once keep their bytes apart', async (t) => {
  const p = await sessions((s) => s.pipe(s)); // the server echoes every stream
  t.after(() => p.done());
  const results = await Promise.all(Array.from({ length: 25 }, async (_, i) => {
    const c = p.cli.open();
    await c.acknowledged();
    const body = Buffer.alloc(10_000 + i * 1000, String.fromCharCode(65 + i));
    const echoed = readAll(c);
    c.end(body);
    return { body, echoed: await echoed };
  }));
  for (const [i, { body, echoed }] of results.entries()) assert.ok(echoed.equals(body), `stream ${i} got its own bytes back`);
});

test('a body larger than the stream window stops at the window until the reader takes it, then arrives whole', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  const body = Buffer.alloc(WINDOW + 2 * 1024 * 1024 + 123);
  for (let i = 0; i + 4 <= body.length; i += 4) body.writeUInt32BE(i, i); // every offset different
  let finished = false;
  c.end(body, () => { finished = true; });
  // Nobody reads the server's stream yet: the sender may have exactly one window in flight.
  await until('a whole window received', () => s.bytesRead >= WINDOW);
  assert.equal(s.bytesRead, WINDOW, 'exactly one window');
  await sleep(150);
  assert.equal(s.bytesRead, WINDOW, 'no byte past the window without credit');
  assert.equal(finished, false, 'the writer is held back');
  const got = await readAll(s);
  assert.equal(got.length, body.length);
  assert.ok(got.equals(body), 'every byte, in order');
  await until('the writer finished', () => finished);
});

test('a slow reader gets a large body in full, credit flowing back as it reads', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  const body = Buffer.alloc(2 * WINDOW + 5, 0x5a);
  c.end(body);
  const n = await new Promise<number>((resolve) => {
    let got = 0;
    s.on('data', (chunk: Buffer) => {
      got += chunk.length;
      // Read in fits and starts: a pause every half MiB or so.
      if (got % (512 * 1024) < chunk.length) { s.pause(); setTimeout(() => s.resume(), 2); }
    });
    s.once('end', () => resolve(got));
  });
  assert.equal(n, body.length);
});

// ---------------------------------------------------------------- reset

test('destroying a stream resets it at the peer, with the reason', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const one = await openStream(p);
  const peerClose = closeOf(one.s);
  one.c.destroy(new Error('client gave up'));
  const err = await peerClose;
  assert.match(err?.message ?? '', /stream reset by peer: client gave up/);
  const two = await openStream(p);
  const peerClose2 = closeOf(two.c);
  two.s.destroy();
  assert.match((await peerClose2)?.message ?? '', /stream reset by peer: closed/, 'a destroy without an error says "closed"');
  await until('no streams left on either side', () => p.srv.streamCount + p.cli.streamCount === 0);
  assert.equal(p.cli.closed, false, 'a reset ends the stream, not the tunnel');
  const three = await openStream(p);
  assert.equal(three.c.id, 5);
});

test('a stream closed after its own FIN sends no RESET (as TCP\'s close after shutdown); one destroyed with an error does', async (t) => {
  const raw = await rawServerToClient();
  t.after(() => { raw.cli.close(); raw.sock.destroy(); });
  const clean = raw.cli.open();
  const failed = raw.cli.open();
  raw.peer.send(frame(FrameType.Ack, clean.id), frame(FrameType.Ack, failed.id));
  await Promise.all([clean.acknowledged(), failed.acknowledged()]);
  clean.end('all sent');
  await once(clean, 'finish');
  clean.destroy();
  failed.end('half');
  await once(failed, 'finish');
  failed.destroy(new Error('gave up'));
  await until('a RESET arrived', () => raw.peer.got.some((f) => f.type === FrameType.Reset));
  await sleep(50); // anything else the client sends arrives by now
  const seen = raw.peer.got.map((f) => `${f.type}/${f.id}/${f.payload.toString()}`);
  assert.deepEqual(seen.filter((x) => x.startsWith(`${FrameType.Reset}/`)), [`${FrameType.Reset}/${failed.id}/gave up`], 'only the stream destroyed with an error is reset');
  assert.ok(seen.includes(`${FrameType.Data}/${clean.id}/all sent`) && seen.includes(`${FrameType.Fin}/${clean.id}/`), 'the clean stream sent its data and FIN');
  assert.equal(raw.cli.streamCount, 0);
});

test('after the peer closed cleanly past its FIN, everything it sent is still read to a clean end', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  const data = Buffer.alloc(300_000, 1);
  c.end(data);
  await once(c, 'finish');
  c.destroy();
  const got = await readAll(s);
  assert.equal(got.length, data.length);
  assert.equal(s.errored, null);
});

test('a RESET after the peer\'s FIN only stops our sending: what it sent is still delivered', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  c.end('all of it');
  await once(c, 'finish');
  c.destroy(new Error('aborted after sending')); // an error: a RESET goes after the FIN
  const got = await readAll(s);
  assert.equal(got.toString(), 'all of it');
  await until('the server side stops sending', () => s.writableEnded);
  assert.equal(s.errored, null);
});

test('a RESET after the peer\'s FIN closes our stream even when our write waits for window (the reset peer grants none)', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  s.resume(); // the server reads the request
  c.end('request'); // the client is done sending (FIN) ...
  await once(s, 'end');
  s.write(Buffer.alloc(WINDOW + 1024 * 1024)); // ... the answer is bigger than the window, and the client never reads it
  await until('a whole window sent', () => c.bytesRead >= WINDOW);
  c.destroy(new Error('client aborts')); // FIN, then RESET
  await until('the server stream closes after the peer reset it', () => s.destroyed && p.srv.streamCount === 0, 3000);
});

// ---------------------------------------------------------------- GOAWAY

test('GOAWAY: the client opens no new streams on the tunnel; streams already open carry on', async (t) => {
  const p = await sessions((s) => s.pipe(s));
  t.after(() => p.done());
  const c = p.cli.open();
  await c.acknowledged();
  assert.equal(p.cli.full, false);
  p.srv.goAway();
  p.srv.goAway(); // said once
  await until('the client heard the GOAWAY', () => p.cli.full);
  assert.throws(() => p.cli.open(), (e: Error) => isProtocolError(e, /cannot open a stream/));
  const echoed = readAll(c);
  c.end('still here');
  assert.equal((await echoed).toString(), 'still here');
  assert.equal(p.cli.closed, false);
  assert.equal(p.srv.closed, false);
});

test('goAway on the client side is a no-op (GOAWAY only goes from server to client)', async (t) => {
  const p = await sessions((s) => s.pipe(s));
  t.after(() => p.done());
  p.cli.goAway();
  const { c } = await openStream(p); // the server would have closed the tunnel on a GOAWAY from a client
  const echoed = readAll(c);
  c.end('ok');
  assert.equal((await echoed).toString(), 'ok');
  assert.equal(p.srv.closed, false);
  assert.equal(p.cli.full, false);
});

test('an OPEN that crosses the GOAWAY is refused before its ACK: the dial fails with "draining"', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  p.srv.goAway();
  const c = p.cli.open(); // the client has not read the GOAWAY yet
  await assert.rejects(c.acknowledged(), /stream reset by peer: draining/);
  assert.equal(p.accepted.length, 0, 'the server never took the stream');
  assert.equal(p.srv.closed, false);
});

// ---------------------------------------------------------------- the end of the tunnel

test('the connection closing ends the tunnel and every stream on both sides', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c, s } = await openStream(p);
  const [cc, sc] = [closeOf(c), closeOf(s)];
  p.cli.socket.destroy();
  assert.match((await cc)?.message ?? '', /tunnel closed/);
  assert.match((await sc)?.message ?? '', /tunnel closed/);
  await until('both sessions closed', () => p.cli.closed && p.srv.closed);
  assert.deepEqual([p.closes.client.length, p.closes.server.length], [1, 1], 'onClose once each');
  assert.ok(!(p.closes.server[0] instanceof NodemeshError), 'the peer going away is no protocol error');
  assert.throws(() => p.cli.open(), (e: Error) => isProtocolError(e, /cannot open/));
  const err = await new Promise<Error | null | undefined>((r) => p.cli.afterWrite(r));
  assert.match(err?.message ?? '', /tunnel closed/);
  p.cli.close(); // closing again is harmless
  assert.equal(p.closes.client.length, 1);
});

test('close(err) hands the error to every stream and to onClose', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c } = await openStream(p);
  const cc = closeOf(c);
  p.cli.close(new Error('certificate revoked'));
  assert.match((await cc)?.message ?? '', /certificate revoked/);
  assert.match(p.closes.client[0]?.message ?? '', /certificate revoked/);
  await until('the peer sees the connection go', () => p.srv.closed);
});

test('an idle stream emits timeout once its idle time has passed', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const { c } = await openStream(p);
  await new Promise<void>((resolve) => c.setTimeout(30, resolve));
  assert.equal(c.timeout, 30);
  c.setTimeout(0); // off again: nothing armed
  assert.equal(c.timeout, 0);
});

test('the client holds at most 1024 streams on a tunnel; the server refuses an OPEN past that', async (t) => {
  const p = await sessions();
  t.after(() => p.done());
  const streams = Array.from({ length: 1024 }, () => p.cli.open());
  assert.equal(p.cli.full, true);
  assert.throws(() => p.cli.open(), /cannot open a stream/);
  await Promise.all(streams.map((s) => s.acknowledged()));
  assert.equal(p.srv.streamCount, 1024);

  const raw = await rawClientToServer();
  t.after(() => { raw.srv.close(); raw.sock.destroy(); });
  raw.peer.send(...Array.from({ length: 1025 }, (_, i) => frame(FrameType.Open, 2 * i + 1)));
  await until('stream 2049 refused', () => raw.peer.got.some((f) => f.type === FrameType.Reset && f.id === 2049));
  const reset = raw.peer.got.find((f) => f.type === FrameType.Reset)!;
  assert.equal(reset.payload.toString(), 'too many streams');
  assert.equal(raw.peer.got.filter((f) => f.type === FrameType.Ack).length, 1024);
  assert.equal(raw.srv.closed, false, 'one refusal does not close the tunnel');
});

// ---------------------------------------------------------------- hostile peers

test('frames for a stream that is gone (racing its reset) are ignored; the tunnel carries on', async (t) => {
  const raw = await rawClientToServer();
  t.after(() => { raw.srv.close(); raw.sock.destroy(); });
  raw.peer.send(frame(FrameType.Open, 1), frame(FrameType.Reset, 1, 'bye'));
  await until('stream 1 opened and reset', () => raw.streams.length === 1 && raw.srv.streamCount === 0);
  raw.peer.send(frame(FrameType.Data, 1, 'late'), frame(FrameType.Window, 1, u32(100)), frame(FrameType.Fin, 1), frame(FrameType.Reset, 1, 'again'), frame(FrameType.Data, 99, 'never opened'));
  raw.peer.send(frame(FrameType.Open, 3));
  await until('stream 3 acknowledged', () => raw.peer.got.some((f) => f.type === FrameType.Ack && f.id === 3));
  assert.equal(raw.srv.closed, false);
  assert.deepEqual(raw.errors, []);
});

/** Bytes a client-role peer might send that must close the server session, and what the error says. */
const BAD_FROM_CLIENT: [string, Buffer[], RegExp][] = [
  ['an HTTP request', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], /unknown frame type 71/],
  ['an unknown frame type', [Buffer.from([9, 0, 0, 0, 1, 0, 0, 0, 0])], /unknown frame type 9/],
  ['a frame on stream 0', [frame(FrameType.Open, 0)], /frame on stream 0/],
  ['an oversized control frame', [header(FrameType.Reset, 1, 5000)], /over the limit/],
  ['an OPEN with an even id', [frame(FrameType.Open, 2)], /bad stream id 2 for OPEN/],
  ['a reused stream id', [frame(FrameType.Open, 1), frame(FrameType.Open, 1)], /bad stream id 1 for OPEN/],
  ['a stream id going backwards', [frame(FrameType.Open, 5), frame(FrameType.Open, 3)], /bad stream id 3 for OPEN/],
  ['an ACK sent to a server', [frame(FrameType.Open, 1), frame(FrameType.Ack, 1)], /ACK sent to a server/],
  ['a GOAWAY sent to a server', [frame(FrameType.GoAway, 1)], /GOAWAY sent to a server/],
  ['a WINDOW of 3 bytes', [frame(FrameType.Open, 1), frame(FrameType.Window, 1, Buffer.from([0, 0, 1]))], /WINDOW payload must be 4 bytes/],
  ['DATA after FIN', [frame(FrameType.Open, 1), frame(FrameType.Fin, 1), frame(FrameType.Data, 1, 'more')], /data after FIN on stream 1/],
  ['DATA past the window', [frame(FrameType.Open, 1), ...Array.from({ length: 4 }, () => frame(FrameType.Data, 1, Buffer.alloc(1024 * 1024))), frame(FrameType.Data, 1, Buffer.alloc(64 * 1024 + 1))], /stream 1: peer sent past its window/],
];

for (const [what, frames, reason] of BAD_FROM_CLIENT) {
  test(`${what} from the peer closes the server session with a protocol error, without throwing`, async (t) => {
    const raw = await rawClientToServer();
    t.after(() => { raw.srv.close(); raw.sock.destroy(); });
    raw.peer.send(...frames);
    await raw.peer.closed; // the session drops the connection
    assert.equal(raw.srv.closed, true);
    assert.equal(raw.errors.length, 1);
    assert.ok(isProtocolError(raw.errors[0], reason), `closed with ${String(raw.errors[0])}`);
    assert.equal(raw.srv.streamCount, 0, 'every stream is gone with it');
    for (const s of raw.streams) assert.equal(s.destroyed, true);
  });
}

test('a stream open when garbage arrives is destroyed with the protocol error', async (t) => {
  const raw = await rawClientToServer();
  t.after(() => { raw.srv.close(); raw.sock.destroy(); });
  raw.peer.send(frame(FrameType.Open, 1), frame(FrameType.Data, 1, 'hello'));
  await until('stream 1 open', () => raw.streams.length === 1);
  const s = raw.streams[0];
  const closed = closeOf(s);
  raw.peer.send(Buffer.from('\x00\x00garbage that is no frame at all'));
  const err = await closed;
  assert.ok(isProtocolError(err, /unknown frame type 0/), String(err));
});

test('an OPEN or garbage sent to a client closes the client session, without throwing', async (t) => {
  for (const [bytes, reason] of [[frame(FrameType.Open, 1), /OPEN sent to a client/], [Buffer.from('SSH-2.0-OpenSSH\r\n'), /unknown frame type 83/]] as const) {
    const raw = await rawServerToClient();
    t.after(() => { raw.cli.close(); raw.sock.destroy(); });
    const c = raw.cli.open();
    const acked = c.acknowledged().then(() => 'acked', (e: Error) => e.message);
    raw.peer.send(bytes);
    await raw.peer.closed;
    assert.equal(raw.cli.closed, true);
    assert.ok(isProtocolError(raw.errors[0], reason), String(raw.errors[0]));
    assert.match(await acked, reason, 'the dial waiting on the ACK fails with the reason');
  }
});

test('a peer that keeps opening streams a draining server refuses loses the tunnel past 1000 refusals', async (t) => {
  const raw = await rawClientToServer();
  t.after(() => { raw.srv.close(); raw.sock.destroy(); });
  raw.srv.goAway();
  raw.srv.goAway(); // said once only
  raw.peer.send(...Array.from({ length: 1000 }, (_, i) => frame(FrameType.Open, 2 * i + 1)));
  await until('1000 refusals', () => raw.peer.got.filter((f) => f.type === FrameType.Reset).length === 1000);
  assert.equal(raw.srv.closed, false, '1000 refusals are tolerated');
  assert.equal(raw.peer.got.find((f) => f.type === FrameType.Reset)?.payload.toString(), 'draining');
  assert.deepEqual(raw.peer.got.filter((f) => f.type === FrameType.GoAway).map((f) => f.id), [1], 'the client was told GOAWAY once, on stream 1');
  raw.peer.send(frame(FrameType.Open, 2001));
  await raw.peer.closed;
  assert.ok(isProtocolError(raw.errors[0], /more than 1000 refused streams in 10 s/), String(raw.errors[0]));
  assert.equal(raw.streams.length, 0);
});

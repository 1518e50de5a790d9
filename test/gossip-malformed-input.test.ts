// Hostile gossip input: random and mutated datagrams and streams never crash a node or change its member table.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { encode } from '../membership/go-msgpack.js';
import { compress, withCrc } from '../membership/packet-codec.js';
import { SerfNode } from '../membership/serf-layer.js';
import * as m from '../membership/wire-messages.js';
import { waitFor } from './helpers/wait-for.js';

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
const nodes: SerfNode[] = [];
after(async () => { for (const n of nodes) await n.shutdown(); });

async function start(name: string, ip: string): Promise<SerfNode> {
  const n = new SerfNode({ name, bindAddr: ip, port: 0, probeIntervalMs: 200, probeTimeoutMs: 100, gossipIntervalMs: 50 }, { role: 'test' }, quiet);
  await n.start();
  nodes.push(n);
  return n;
}

const table = (n: SerfNode) => JSON.stringify([...n.memberlist.nodes.values()].map((x) => [x.name, x.addr, x.port, x.incarnation, x.state]).sort());

/** Valid messages to mutate: every shape the decoder knows. */
function seeds(): Buffer[] {
  const addr = Buffer.from([127, 0, 6, 9]);
  const alive = m.alive({ Addr: addr, Incarnation: 3, Meta: Buffer.from([0xff, 0x80]), Node: 'ghost', Port: 7946, Vsn: m.VSN });
  return [
    m.ping({ Node: '', SeqNo: 7, SourceAddr: addr, SourceNode: 'x', SourcePort: 1 }), alive,
    m.suspect({ From: 'x', Incarnation: 9, Node: 'a' }), m.dead({ From: 'x', Incarnation: 9, Node: 'a' }),
    compress(alive), withCrc(alive), Buffer.concat([Buffer.from([7, 2, 0, alive.length, 0, 5]), alive, Buffer.from([0, 1, 2, 3, 4])]),
    Buffer.concat([Buffer.from([8, 3]), encode({ CC: false, LTime: 5, Name: 'ev', Payload: Buffer.from('x') })]),
  ];
}

function mutate(b: Buffer): Buffer {
  const c = Buffer.from(b);
  switch (Math.floor(Math.random() * 5)) {
    case 0: return c.subarray(0, Math.floor(Math.random() * c.length)); // truncated
    case 1: for (let i = 0; i < 3; i++) c[Math.floor(Math.random() * c.length)] = Math.floor(Math.random() * 256); return c;
    case 2: return Buffer.concat([c.subarray(0, 1), Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff]), c.subarray(1)]); // huge map length
    case 3: return Buffer.concat([Buffer.from([0x0c, 0, 0, 0, 0]), c]); // bad CRC
    default: return Buffer.concat([Buffer.from([9]), encode({ Algo: 0, Buf: randomBytes(40) })]); // bad LZW
  }
}

test('thousands of hostile datagrams and streams: no crash, member table unchanged, still alive to its peer', async () => {
  const a = await start('victim', '127.0.6.1');
  const b = await start('peer', '127.0.6.2');
  assert.equal(await b.join([`127.0.6.1:${a.memberlist.port}`]), 1);
  await waitFor(() => assert.equal(a.members().find((x) => x.name === 'peer')?.status, 'alive'));
  const before = table(a);

  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.6.3', r));
  const all = seeds();
  const send = (buf: Buffer) => new Promise<void>((r) => udp.send(buf, a.memberlist.port, '127.0.6.1', () => r()));
  for (let i = 0; i < 3000; i++) {
    const pick = i % 3 === 0 ? randomBytes(1 + Math.floor(Math.random() * 200)) : mutate(all[i % all.length]);
    // A mutated packet might by chance be a valid alive for a new name: only 'ghost' could appear, and it is excluded below.
    await send(pick);
  }
  udp.close();
  for (let i = 0; i < 100; i++) {
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.6.1', port: a.memberlist.port, localAddress: '127.0.6.3' }, () => {
        s.end(i % 2 ? randomBytes(64) : mutate(m.pushPull(true, [], Buffer.alloc(0))));
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.setTimeout(2000, () => s.destroy());
    });
  }
  assert.ok(a.memberlist.dropped.packets > 0, 'bad input was counted');
  // A byte flip can turn the seed alive into a well-formed alive for another name, which an unencrypted pool
  // rightly accepts (encryption is the defence); what must never change is what we knew.
  const known = (t: string) => JSON.stringify(JSON.parse(t).filter((x: unknown[]) => x[0] === 'peer' || x[0] === 'victim'));
  assert.equal(known(table(a)), known(before), 'known members changed');
  assert.ok(!a.memberlist.nodes.has(''), 'a nameless node was accepted');
  for (const n of a.memberlist.nodes.values()) assert.ok(n.port > 0 && n.addr !== '0.0.0.0', `unusable node accepted: ${n.name}`);
  // Still answering probes: the peer keeps it alive over several probe rounds.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(b.members().find((x) => x.name === 'victim')?.status, 'alive');
});

test('a forged far-future Lamport time and a decompression bomb are shrugged off', async () => {
  const { lzwCompress } = await import('../membership/go-lzw.js');
  const a = await start('clockwise', '127.0.6.11');
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.6.13', r));
  const send = (buf: Buffer) => new Promise<void>((r) => udp.send(buf, a.memberlist.port, '127.0.6.11', () => r()));
  await send(Buffer.concat([Buffer.from([8, 1]), encode({ LTime: 2n ** 64n - 1n, Node: 'forger' })]));
  const bomb = Buffer.concat([Buffer.from([9]), encode({ Algo: 0, Buf: lzwCompress(Buffer.alloc(4 * 1024 * 1024)) })]);
  assert.ok(bomb.length < 60_000, `bomb is ${bomb.length} bytes`);
  const dropped = a.memberlist.dropped.packets;
  await send(bomb);
  udp.close();
  await waitFor(() => assert.ok(a.memberlist.dropped.packets > dropped, 'bomb dropped'));
  // Push/pull (which encodes our Lamport time) still works: a new node can join.
  const b = await start('joiner', '127.0.6.12');
  assert.equal(await b.join([`127.0.6.11:${a.memberlist.port}`]), 1);
});

test('streams are bounded: a short reliable user message is dropped, a trickle is cut at the deadline, over 128 at once are refused', async () => {
  const n = new SerfNode({ name: 'streams', bindAddr: '127.0.6.21', port: 0, tcpTimeoutMs: 1500 }, { role: 'test' }, quiet);
  await n.start();
  nodes.push(n);
  const port = n.memberlist.port;
  const open = () => new Promise<import('node:net').Socket>((resolve) => {
    const s = connect({ host: '127.0.6.21', port, localAddress: '127.0.6.22' }, () => resolve(s));
    s.on('error', () => undefined);
  });
  const closed = (s: import('node:net').Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

  // A user message whose header promises 1000 bytes, then the stream ends after 10.
  const before = n.memberlist.dropped.packets;
  const short = await open();
  short.end(Buffer.concat([Buffer.from([8]), encode({ UserMsgLen: 1000 }), Buffer.alloc(10, 1)]));
  await closed(short);
  await waitFor(() => assert.ok(n.memberlist.dropped.packets > before, 'short user message dropped'));

  // One byte, then silence: the stream is closed at the absolute deadline, not kept forever.
  const trickle = await open();
  trickle.write(Buffer.from([6]));
  await closed(trickle);

  // 140 idle streams at once: the agent keeps at most 128 of them.
  const idle = await Promise.all(Array.from({ length: 140 }, open));
  await waitFor(() => assert.ok(idle.filter((s) => s.destroyed || s.readableEnded).length >= 12, 'streams over the limit are refused'), 5000);
  for (const s of idle) s.destroy();
  const joiner = await start('after-streams', '127.0.6.23');
  // Once the flood's sockets are gone, push/pull is served again.
  await waitFor(async () => assert.equal(await joiner.join([`127.0.6.21:${port}`]), 1, 'still answers push/pull'), 5000);
});

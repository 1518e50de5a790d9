// The gossip codecs byte for byte: Go msgpack shapes from real Serf captures, LZW, CRC-32, compound framing, AES-GCM.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { test } from 'node:test';
import { decode, encode } from '../membership/go-msgpack.js';
import { lzwCompress, lzwDecompress } from '../membership/go-lzw.js';
import { compound, crc32, decrypt, encrypt, splitCompound } from '../membership/packet-codec.js';
import { decodeTags, encodeTags } from '../membership/serf-layer.js';
import * as m from '../membership/wire-messages.js';

const hex = (s: string) => s.replace(/\s+/g, '');
const str = (s: string) => Buffer.from(s).toString('hex');

test('ping and alive encode exactly as captured from Serf 0.9.4', () => {
  const ping = m.ping({ Node: 'tsnode', SeqNo: 1, SourceAddr: Buffer.from([127, 0, 0, 1]), SourceNode: 'goA', SourcePort: 7946 });
  assert.equal(ping.toString('hex'), hex(`00 85 a4${str('Node')} a6${str('tsnode')} a5${str('SeqNo')} 01 aa${str('SourceAddr')} a4 7f000001 aa${str('SourceNode')} a3${str('goA')} aa${str('SourcePort')} cd 1f0a`));
  const meta = encodeTags({ role: 'web', dc: 'x' });
  const alive = m.alive({ Addr: Buffer.from([127, 0, 0, 1]), Incarnation: 1, Meta: meta, Node: 'goA', Port: 7946, Vsn: m.VSN });
  // The capture had role before dc: a Go map's order is random; ours is sorted, which Go reads the same.
  assert.equal(alive.toString('hex'), hex(`04 86 a4${str('Addr')} a4 7f000001 ab${str('Incarnation')} 01 a4${str('Meta')} b0 ff82a2${str('dc')}a1${str('x')}a4${str('role')}a3${str('web')} a4${str('Node')} a3${str('goA')} a4${str('Port')} cd1f0a a3${str('Vsn')} a6 010502020505`));
  assert.deepEqual(decodeTags(meta), { role: 'web', dc: 'x' });
  assert.deepEqual(decodeTags(Buffer.from('legacy')), { role: 'legacy' });
  assert.throws(() => encodeTags({ big: 'x'.repeat(600) }), /512/);
});

test('msgpack: smallest integer forms, raw strings for bytes, nil, sorted keys; decoding rejects junk', () => {
  assert.equal(encode(7).toString('hex'), '07');
  assert.equal(encode(200).toString('hex'), 'ccc8');
  assert.equal(encode(70000).toString('hex'), 'ce00011170');
  assert.equal(encode(-1).toString('hex'), 'ff');
  assert.equal(encode(Buffer.alloc(40, 1)).subarray(0, 3).toString('hex'), 'da0028');
  assert.equal(encode(null).toString('hex'), 'c0');
  assert.equal(encode({ b: 1, a: 2 }).toString('hex'), `82a1${str('a')}02a1${str('b')}01`);
  assert.throws(() => decode(Buffer.from('dfffffffff', 'hex')), /cannot fit|over the limit/);
  assert.throws(() => decode(Buffer.from('a5ab', 'hex')), /truncated/);
  assert.throws(() => decode(Buffer.from('c1', 'hex')), /unsupported/);
});

test('LZW round-trips what Go would produce and refuses a stream without EOF', () => {
  for (const input of [Buffer.alloc(0), Buffer.from('TOBEORNOTTOBEORTOBEORNOT'), Buffer.alloc(200_000, 'abc'), randomBytes(20_000)]) {
    assert.deepEqual(lzwDecompress(lzwCompress(input)), input);
  }
  // "a" is literal 0x61 then EOF 257, 9 bits each, LSB first.
  assert.equal(lzwCompress(Buffer.from('a')).toString('hex'), '610202');
  assert.throws(() => lzwDecompress(Buffer.from([0x61])), /unexpected EOF/);
});

test('CRC-32 is zlib\'s; compounds split, with a truncated tail dropped', () => {
  const b = randomBytes(1000);
  assert.equal(crc32(b), zlibCrc32(b));
  const parts = [Buffer.from([4, 1, 2]), Buffer.from([3, 9])];
  assert.deepEqual(splitCompound(compound(parts).subarray(1)), parts);
  assert.deepEqual(splitCompound(compound(parts).subarray(1, -1)), [parts[0]]);
  assert.throws(() => compound(Array.from({ length: 128 }, () => Buffer.from([0]))), /127/);
});

test('AES-GCM, memberlist version 1: any key of the ring decrypts, a wrong key or a flipped bit does not', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(16);
  const sealed = encrypt(k1, Buffer.from('hello'));
  assert.equal(sealed[0], 1);
  assert.equal(sealed.length, 29 + 5);
  assert.equal(decrypt([k2, k1], sealed).toString(), 'hello');
  assert.throws(() => decrypt([k2], sealed), /no installed key/);
  sealed[20] ^= 1;
  assert.throws(() => decrypt([k1], sealed), /no installed key/);
});

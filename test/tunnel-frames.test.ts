// The tunnel's frame codec (dataplane/tunnel/tunnel-frames.ts): 9-byte headers, incremental parsing across any chunking, DATA in zero-copy slices, malformed frames refused with a TUNNEL_PROTOCOL error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameParser, FrameType, HEADER_BYTES, MAX_DATA_FRAME, TUNNEL_ALPN, header, tunnelError } from '../dataplane/tunnel/tunnel-frames.js';
import { NodemeshError } from '../lib/errors.js';

type Event = { kind: 'control'; type: FrameType; stream: number; payload: Buffer } | { kind: 'data'; stream: number; slice: Buffer };

function parser(): { p: FrameParser; events: Event[] } {
  const events: Event[] = [];
  const p = new FrameParser({
    control: (type, stream, payload) => events.push({ kind: 'control', type, stream, payload: Buffer.from(payload) }),
    data: (stream, slice) => events.push({ kind: 'data', stream, slice }),
  });
  return { p, events };
}

const frame = (type: FrameType, stream: number, payload = Buffer.alloc(0)) => Buffer.concat([header(type, stream, payload.length), payload]);

/** Control frames as type/stream/payload text, and each stream's DATA joined. */
function summary(events: Event[]): { control: string[]; data: Record<number, string> } {
  const control: string[] = [];
  const data: Record<number, string> = {};
  for (const e of events) {
    if (e.kind === 'control') control.push(`${e.type}/${e.stream}/${e.payload.toString('hex')}`);
    else data[e.stream] = (data[e.stream] ?? '') + e.slice.toString('latin1');
  }
  return { control, data };
}

/** A TUNNEL_PROTOCOL error (a NodemeshError, status 502) whose message matches `re`. */
const protocolError = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof NodemeshError, `a NodemeshError, got ${String(e)}`);
  assert.equal(e.code, 'TUNNEL_PROTOCOL');
  assert.equal(e.status, 502);
  assert.match(e.message, re);
  return true;
};

test('the header is type (u8), stream id (u32 BE) and payload length (u32 BE): 9 bytes', () => {
  assert.equal(HEADER_BYTES, 9);
  assert.equal(header(FrameType.Data, 0x01020304, 0x0a0b0c0d).toString('hex'), '02' + '01020304' + '0a0b0c0d');
  assert.equal(header(FrameType.GoAway, 1, 0).toString('hex'), '07' + '00000001' + '00000000');
  assert.equal(header(FrameType.Open, 0xffffffff, 0).toString('hex'), '01' + 'ffffffff' + '00000000');
  assert.equal(TUNNEL_ALPN, 'nodemesh-tunnel/1');
});

test('the frame types have the wire values of ALPN nodemesh-tunnel/1', () => {
  assert.deepEqual([FrameType.Open, FrameType.Data, FrameType.Fin, FrameType.Reset, FrameType.Window, FrameType.Ack, FrameType.GoAway], [1, 2, 3, 4, 5, 6, 7]);
});

test('the encoder refuses values that do not fit the header fields rather than writing a wrong frame', () => {
  assert.throws(() => header(FrameType.Data, 2 ** 32, 0), RangeError);
  assert.throws(() => header(FrameType.Data, 1, -1), RangeError);
  assert.throws(() => header(FrameType.Data, 1, 2 ** 32), RangeError);
});

test('every frame type round-trips: control frames whole, DATA as payload slices', () => {
  const window = Buffer.alloc(4);
  window.writeUInt32BE(65_536, 0);
  const bytes = Buffer.concat([
    frame(FrameType.Open, 1),
    frame(FrameType.Ack, 1),
    frame(FrameType.Data, 1, Buffer.from('hello')),
    frame(FrameType.Window, 1, window),
    frame(FrameType.Fin, 1),
    frame(FrameType.Reset, 3, Buffer.from('why')),
    frame(FrameType.GoAway, 1),
  ]);
  const { p, events } = parser();
  p.push(bytes);
  assert.deepEqual(summary(events), {
    control: ['1/1/', '6/1/', `5/1/${window.toString('hex')}`, '3/1/', `4/3/${Buffer.from('why').toString('hex')}`, '7/1/'],
    data: { 1: 'hello' },
  });
});

test('any chunking of the byte stream gives the same frames: byte by byte, odd sizes, all at once', () => {
  const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
  const reason = Buffer.from('x'.repeat(300));
  const bytes = Buffer.concat([
    frame(FrameType.Open, 1), frame(FrameType.Open, 3),
    frame(FrameType.Data, 1, payload), frame(FrameType.Data, 3, Buffer.from('three')),
    frame(FrameType.Reset, 3, reason), frame(FrameType.Data, 1, Buffer.alloc(0)), frame(FrameType.Fin, 1),
  ]);
  const whole = parser();
  whole.p.push(bytes);
  const expected = summary(whole.events);
  assert.equal(expected.data[1], payload.toString('latin1'));
  for (const size of [1, 2, 5, 8, 9, 10, 17, 64, 1000]) {
    const { p, events } = parser();
    for (let i = 0; i < bytes.length; i += size) p.push(bytes.subarray(i, i + size));
    assert.deepEqual(summary(events), expected, `chunks of ${size} bytes`);
  }
});

test('DATA payloads are handed on as slices of the incoming chunk, never copied', () => {
  const chunk = Buffer.concat([frame(FrameType.Data, 5, Buffer.from('abcdef'))]);
  const { p, events } = parser();
  p.push(chunk);
  const e = events[0];
  assert.equal(e.kind, 'data');
  if (e.kind !== 'data') return;
  assert.equal(e.slice.buffer, chunk.buffer, 'the same memory');
  assert.equal(e.slice.byteOffset, chunk.byteOffset + HEADER_BYTES);
  assert.equal(e.slice.toString(), 'abcdef');
});

test('a DATA frame split across reads arrives as several slices, in order; an empty DATA frame delivers nothing', () => {
  const { p, events } = parser();
  const bytes = frame(FrameType.Data, 7, Buffer.from('0123456789'));
  p.push(bytes.subarray(0, 12));
  p.push(bytes.subarray(12, 15));
  p.push(bytes.subarray(15));
  assert.deepEqual(events.map((e) => (e.kind === 'data' ? e.slice.toString() : '?')), ['012', '345', '6789']);
  p.push(frame(FrameType.Data, 7));
  assert.equal(events.length, 3, 'no empty slice handed on');
});

test('a control payload split across reads is gathered into one buffer', () => {
  const { p, events } = parser();
  const bytes = frame(FrameType.Reset, 9, Buffer.from('a long reason'));
  for (const b of bytes) p.push(Buffer.from([b]));
  assert.equal(events.length, 1);
  assert.equal(events[0].kind === 'control' && events[0].payload.toString(), 'a long reason');
});

test('the largest frames allowed are accepted: DATA of 1 MiB (more than we send), control of 4096 bytes', () => {
  assert.equal(MAX_DATA_FRAME, 64 * 1024);
  const big = parser();
  big.p.push(frame(FrameType.Data, 1, Buffer.alloc(1024 * 1024, 7)));
  assert.equal(big.events.reduce((n, e) => n + (e.kind === 'data' ? e.slice.length : 0), 0), 1024 * 1024);
  const ctl = parser();
  ctl.p.push(frame(FrameType.Reset, 1, Buffer.alloc(4096, 0x61)));
  assert.equal(ctl.events.length, 1);
});

test('oversized frames are refused from the header alone, before any payload is buffered', () => {
  assert.throws(() => parser().p.push(header(FrameType.Data, 1, 1024 * 1024 + 1)), protocolError(/frame of 1048577 bytes is over the limit/));
  assert.throws(() => parser().p.push(header(FrameType.Data, 1, 0xffffffff)), protocolError(/over the limit/));
  for (const t of [FrameType.Open, FrameType.Fin, FrameType.Reset, FrameType.Window, FrameType.Ack, FrameType.GoAway]) {
    assert.throws(() => parser().p.push(header(t, 1, 4097)), protocolError(/frame of 4097 bytes is over the limit/), `type ${t}`);
  }
});

test('unknown frame types are refused', () => {
  for (const t of [0, 8, 9, 0x47, 255]) {
    assert.throws(() => parser().p.push(Buffer.from([t, 0, 0, 0, 1, 0, 0, 0, 0])), protocolError(new RegExp(`unknown frame type ${t}\\b`)));
  }
});

test('frames on stream 0 are refused, of every type', () => {
  for (const t of [FrameType.Open, FrameType.Data, FrameType.Fin, FrameType.Reset, FrameType.Window, FrameType.Ack, FrameType.GoAway]) {
    assert.throws(() => parser().p.push(header(t, 0, 0)), protocolError(/frame on stream 0/), `type ${t}`);
  }
});

test('garbage (an HTTP request, random bytes) gives a protocol error, never another kind of exception', () => {
  assert.throws(() => parser().p.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), protocolError(/unknown frame type 71/));
  let seed = 7;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % 256; };
  for (let round = 0; round < 300; round++) {
    const junk = Buffer.from(Array.from({ length: 1 + (round % 40) }, rnd));
    const { p } = parser();
    try {
      for (let i = 0; i < junk.length; i += 3) p.push(junk.subarray(i, i + 3));
    } catch (e) {
      assert.ok(e instanceof NodemeshError && e.code === 'TUNNEL_PROTOCOL', `round ${round}: ${String(e)}`);
    }
  }
});

test('frames before the bad one are delivered; the error comes when the bad header is complete', () => {
  const { p, events } = parser();
  const good = Buffer.concat([frame(FrameType.Open, 1), frame(FrameType.Data, 1, Buffer.from('ok'))]);
  const bad = header(9 as FrameType, 1, 0);
  p.push(good);
  p.push(bad.subarray(0, 4)); // half a header: nothing to judge yet
  assert.throws(() => p.push(bad.subarray(4)), protocolError(/unknown frame type 9/));
  assert.deepEqual(summary(events), { control: ['1/1/'], data: { 1: 'ok' } });
});

test('an empty chunk is harmless', () => {
  const { p, events } = parser();
  p.push(Buffer.alloc(0));
  p.push(frame(FrameType.Open, 1));
  p.push(Buffer.alloc(0));
  assert.equal(events.length, 1);
});

test('tunnelError makes the error the parser throws', () => {
  const e = tunnelError('boom');
  assert.ok(e instanceof NodemeshError, 'a NodemeshError');
  assert.equal(e.code, 'TUNNEL_PROTOCOL');
  assert.equal(e.status, 502);
  assert.equal(e.message, 'boom');
});

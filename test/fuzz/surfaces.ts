// The input surfaces under fuzz: each decodes or validates untrusted input and may only fail with its own error types.

import { RegexSyntaxError } from '../../lib/linear-regex.js';
import { randomBytes } from 'node:crypto';
import { NodemeshError } from '../../lib/errors.js';
import { LzwError, lzwCompress, lzwDecompress } from '../../membership/go-lzw.js';
import { MsgpackError, decode, encode } from '../../membership/go-msgpack.js';
import { PacketError, compound, compress, decompress, decrypt, encrypt, splitCompound } from '../../membership/packet-codec.js';
import * as m from '../../membership/wire-messages.js';
import { parseIntentionBody } from '../../api/routes-connect.js';
import { decodeConfigEntry } from '../../model/config-entry.js';
import { parseGoDuration } from '../../lib/go-duration.js';
import { decodeCheckBody, decodeServiceBody, normalizeService } from '../../model/service-definition.js';
import { compileSubsetFilter } from '../../model/subset-filter.js';
import { httpMatcher } from '../../model/http-match.js';
import { validateIntention, withDefaults } from '../../model/intention.js';
import type { Rng } from './mutate.js';
import { generateRecord, mergeRecord } from './replicated-policy-records.js';

export interface Surface {
  name: string;
  kind: 'bytes' | 'json' | 'text';
  seeds: (Buffer | unknown | string)[];
  /** Feeds one input; throws only `allowed` errors. */
  run(input: Buffer | string): void;
  allowed(e: unknown): boolean;
  /** Builds each input itself (instead of mutating `seeds`). */
  generate?(rng: Rng): Buffer | string;
}

const addr = Buffer.from([127, 0, 6, 9]);
const wire = [
  m.ping({ SeqNo: 7, Node: 'n1' } as m.Ping),
  m.alive({ Addr: addr, Incarnation: 3, Meta: Buffer.from([0xff, 0x80]), Node: 'ghost', Port: 7946, Vsn: m.VSN }),
  m.suspect({ Incarnation: 9, Node: 'n2', From: 'n1' }),
  m.dead({ Incarnation: 9, Node: 'n2', From: 'n1' }),
  m.ack(5, Buffer.from('payload')),
  m.nack(5),
  m.pushPull(true, [{ Name: 'a', Addr: addr, Port: 1, Meta: Buffer.alloc(0), Incarnation: 1, State: 0, Vsn: m.VSN }], Buffer.from('{"nodes":[]}')),
];
const KEY = randomBytes(16);
const packets = [...wire, compound(wire.slice(0, 3)), compress(wire[1]), ...wire.map((w) => encrypt(KEY, w))];

/** A UDP packet as memberlist reads one: optional CRC, compound, compression, then each message's msgpack body. */
function readPacket(buf: Buffer, depth = 0): void {
  if (buf.length === 0) throw new PacketError('empty');
  if (depth > 4) throw new PacketError('too deep');
  const type = buf[0];
  const body = buf.subarray(1);
  if (type === m.MsgType.compound) for (const part of splitCompound(body)) readPacket(part, depth + 1);
  else if (type === m.MsgType.compress) readPacket(decompress(body, 1 << 20), depth + 1);
  else if (type === m.MsgType.pushPull) m.readPushPull(body);
  else {
    const v = decode(body);
    if (type === m.MsgType.alive) m.readAlive(v);
    else if (type === m.MsgType.suspect || type === m.MsgType.dead) m.readSuspect(v);
    else if (type === m.MsgType.ping) m.readPing(v);
    else if (type === m.MsgType.ackResp) m.readAck(v);
  }
}

const gossipErrors = (e: unknown) => e instanceof MsgpackError || e instanceof LzwError || e instanceof PacketError || e instanceof NodemeshError;
/** A 4xx NodemeshError (what the API turns into a clear answer). */
const clientError = (e: unknown) => e instanceof NodemeshError && e.status >= 400 && e.status < 500;
/** The surface's own coded error (and nothing else: a TypeError or RangeError from deep inside is a finding). */
const codedError = (code: string) => (e: unknown) => e instanceof NodemeshError && e.code === code;

const SERVICES = [
  { Name: 'web', Port: 8080, Tags: ['v1'], Meta: { version: 'v1' }, Check: { TTL: '30s' } },
  { Name: 'api', ID: 'api-1', Address: '127.0.0.1', Port: 9000, Checks: [{ HTTP: 'http://127.0.0.1:9000/health', Interval: '10s', Timeout: '1s' }, { TCP: '127.0.0.1:9000', Interval: '5s' }],
    Connect: { SidecarService: { Port: 21000, Proxy: { Upstreams: [{ DestinationName: 'db', LocalBindPort: 9191 }] } } } },
  { Name: 'legacy', Address: '127.0.0.9', Port: 5432, Connect: { Bridge: true } },
  { Kind: 'connect-proxy', Name: 'p', Port: 21001, Proxy: { DestinationServiceName: 'web', LocalServicePort: 8080 } },
];
const CHECKS = [{ Name: 'mem', TTL: '10s' }, { ID: 'h', Name: 'http', HTTP: 'http://127.0.0.1/', Interval: '10s', Header: { A: ['b'] } }];
const INTENTIONS = [
  { SourceName: 'web', DestinationName: 'db', Action: 'allow', Meta: { a: 'b' }, Description: 'x' },
  { SourceName: '*', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/p/', Methods: ['GET'], Header: [{ Name: 'x', Regex: 'a.*' }] } }] },
];
const ENTRIES = [
  { Kind: 'service-defaults', Name: 'web', Protocol: 'http' },
  { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } },
  { Kind: 'service-resolver', Name: 'web', DefaultSubset: 'v1', ConnectTimeout: '3s', Subsets: { v1: { Filter: 'Service.Meta.version == v1' } }, Failover: { '*': { Service: 'b' } }, LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x' }] }, Nodemesh: { RateLimit: { RequestsPerSecond: 5 }, Limits: { MaxConnections: 1 } } },
  { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 90.5, ServiceSubset: 'v1' }, { Weight: 9.5 }] },
  { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathRegex: '/a/.*', Header: [{ Name: 'x', Prefix: 'y' }], QueryParam: [{ Name: 'q', Exact: '1' }], Methods: ['GET'] } }, Destination: { ServiceSubset: 'v1', RequestTimeout: '1s', NumRetries: 2, RetryOnStatusCodes: [503], Nodemesh: { Fault: { AbortPercent: 1, AbortStatus: 503 } } } }] },
];
/** Entries the validators see as already stored (for the protocol checks). */
const stored = (kind: string, name: string) => (kind === 'service-defaults' && name === 'web' ? { ...ENTRIES[0], CreateIndex: 1, ModifyIndex: 1 } as never : undefined);

export const SURFACES: Surface[] = [
  { name: 'msgpack', kind: 'bytes', seeds: wire.map((w) => w.subarray(1)), run: (b) => void decode(b as Buffer), allowed: (e) => e instanceof MsgpackError },
  { name: 'lzw', kind: 'bytes', seeds: [lzwCompress(Buffer.from('hello hello hello gossip')), lzwCompress(randomBytes(300)), lzwCompress(Buffer.alloc(2000))], run: (b) => void lzwDecompress(b as Buffer, 1 << 20), allowed: (e) => e instanceof LzwError },
  { name: 'gossip-packet', kind: 'bytes', seeds: packets, run: (b) => readPacket(b as Buffer), allowed: gossipErrors },
  { name: 'gossip-encrypted', kind: 'bytes', seeds: wire.map((w) => encrypt(KEY, w)), run: (b) => readPacket(decrypt([KEY], b as Buffer)), allowed: gossipErrors },
  { name: 'push-pull', kind: 'bytes', seeds: [wire[6].subarray(1), encode({ Nodes: 1, UserStateLen: 0, Join: false })], run: (b) => void m.readPushPull(b as Buffer), allowed: gossipErrors },
  {
    name: 'service-body', kind: 'json', seeds: SERVICES,
    run: (t) => void normalizeService(decodeServiceBody(t as string)), allowed: clientError,
  },
  { name: 'check-body', kind: 'json', seeds: CHECKS, run: (t) => void decodeCheckBody(t as string), allowed: clientError },
  {
    name: 'intention-body', kind: 'json', seeds: INTENTIONS,
    run: (t) => {
      const i = withDefaults(parseIntentionBody(t as string, () => 'http'));
      validateIntention(i);
      for (const p of i.Permissions ?? []) if (p && typeof p === 'object' && p.HTTP) try { httpMatcher(p.HTTP)({ method: 'GET', path: '/p/x', query: new URLSearchParams('q=1'), headers: { x: 'abc' } }); } catch (e) { if (!(e instanceof RegexSyntaxError)) throw e; }
    },
    allowed: clientError,
  },
  {
    name: 'config-entry', kind: 'json', seeds: ENTRIES,
    run: (t) => {
      let raw: unknown;
      try { raw = JSON.parse(t as string); } catch { return; } // the route answers 400 before validation
      decodeConfigEntry(raw, stored);
    },
    allowed: clientError,
  },
  {
    name: 'subset-filter', kind: 'text', seeds: ['Service.Meta.version == v1', 'Service.Tags contains canary and not Node.Meta.zone == z1', '"v2" in Service.Tags or Service.ID != x', 'Service.Meta.k is empty'],
    run: (t) => void compileSubsetFilter(t as string)({ service: { ID: 'a', Service: 's', Tags: ['canary'], Meta: { version: 'v1' } } as never, nodeMeta: { zone: 'z1' } }),
    allowed: codedError('SUBSET_FILTER_INVALID'),
  },
  {
    // Well-formed records with hostile values, merged into real stores; admitted ones are decided and matched.
    name: 'replicated-policy-records', kind: 'json', seeds: [], generate: generateRecord,
    run: (t) => mergeRecord(t as string),
    allowed: () => false,
  },
  { name: 'go-duration', kind: 'text', seeds: ['72h', '1h30m', '1.5s', '300ms', '-2us', '0', '1µs', '9223372036854775807ns'], run: (t) => void parseGoDuration(t as string), allowed: codedError('DURATION_INVALID') },
];

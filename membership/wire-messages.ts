// memberlist's message types and bodies (v0.2.2 wire format): building and reading each one.

import { asObject, bool, bytes, decode, encode, MsgpackTruncated, str, uint, Reader, type Decoded, type GoValue } from './go-msgpack.js';

export const MsgType = {
  ping: 0, indirectPing: 1, ackResp: 2, suspect: 3, alive: 4, dead: 5, pushPull: 6, compound: 7, user: 8,
  compress: 9, encrypt: 10, nackResp: 11, hasCrc: 12, err: 13,
} as const;

export const NodeState = { alive: 0, suspect: 1, dead: 2, left: 3 } as const;

/** [PMin, PMax, PCur, DMin, DMax, DCur]: memberlist 1..5 speaking 2, Serf delegate 2..5 speaking 5. */
export const VSN = Buffer.from([1, 5, 2, 2, 5, 5]);

export interface Ping { Node: string; SeqNo: number; SourceAddr: Buffer | null; SourceNode: string; SourcePort: number }
export interface IndirectPing { Nack: boolean; Node: string; Port: number; SeqNo: number; Target: Buffer | null; SourceAddr: Buffer | null; SourceNode: string; SourcePort: number }
export interface Alive { Addr: Buffer; Incarnation: number; Meta: Buffer | null; Node: string; Port: number; Vsn: Buffer }
export interface Suspect { From: string; Incarnation: number; Node: string }
export type Dead = Suspect;
export interface PushNodeState { Addr: Buffer; Incarnation: number; Meta: Buffer | null; Name: string; Port: number; State: number; Vsn: Buffer }
export interface PushPullHeader { Join: boolean; Nodes: number; UserStateLen: number }

export const withType = (type: number, body: GoValue) => Buffer.concat([Buffer.from([type]), encode(body)]);

export function ping(p: Ping): Buffer {
  const body: { [k: string]: GoValue } = { Node: p.Node, SeqNo: p.SeqNo };
  if (p.SourceAddr) Object.assign(body, { SourceAddr: p.SourceAddr, SourceNode: p.SourceNode, SourcePort: p.SourcePort });
  return withType(MsgType.ping, body);
}

export const ack = (seqNo: number, payload: Buffer | null = null) => withType(MsgType.ackResp, { Payload: payload, SeqNo: seqNo });
export const nack = (seqNo: number) => withType(MsgType.nackResp, { SeqNo: seqNo });
export const alive = (a: Alive) => withType(MsgType.alive, { ...a });
export const suspect = (s: Suspect) => withType(MsgType.suspect, { ...s });
export const dead = (d: Dead) => withType(MsgType.dead, { ...d });
export const indirectPing = (p: IndirectPing) => withType(MsgType.indirectPing, {
  Nack: p.Nack, Node: p.Node, Port: p.Port, SeqNo: p.SeqNo, Target: p.Target,
  ...(p.SourceAddr ? { SourceAddr: p.SourceAddr, SourceNode: p.SourceNode, SourcePort: p.SourcePort } : {}),
});

export const readPing = (v: Decoded): Ping => {
  const o = asObject(v, 'ping');
  return { Node: str(o, 'Node'), SeqNo: uint(o, 'SeqNo'), SourceAddr: bytes(o, 'SourceAddr'), SourceNode: str(o, 'SourceNode'), SourcePort: uint(o, 'SourcePort', 0xffff) };
};
export const readIndirectPing = (v: Decoded): IndirectPing => {
  const o = asObject(v, 'indirectPing');
  return {
    Nack: bool(o, 'Nack'), Node: str(o, 'Node'), Port: uint(o, 'Port', 0xffff), SeqNo: uint(o, 'SeqNo'), Target: bytes(o, 'Target'),
    SourceAddr: bytes(o, 'SourceAddr'), SourceNode: str(o, 'SourceNode'), SourcePort: uint(o, 'SourcePort', 0xffff),
  };
};
export const readAck = (v: Decoded) => {
  const o = asObject(v, 'ack');
  return { SeqNo: uint(o, 'SeqNo'), Payload: bytes(o, 'Payload') };
};
export const readAlive = (v: Decoded): Alive => {
  const o = asObject(v, 'alive');
  return { Addr: bytes(o, 'Addr') ?? Buffer.alloc(0), Incarnation: uint(o, 'Incarnation'), Meta: bytes(o, 'Meta'), Node: str(o, 'Node'), Port: uint(o, 'Port', 0xffff), Vsn: bytes(o, 'Vsn') ?? Buffer.alloc(0) };
};
export const readSuspect = (v: Decoded): Suspect => {
  const o = asObject(v, 'suspect');
  return { From: str(o, 'From'), Incarnation: uint(o, 'Incarnation'), Node: str(o, 'Node') };
};
export const readPushNodeState = (v: Decoded): PushNodeState => {
  const o = asObject(v, 'pushNodeState');
  return {
    Addr: bytes(o, 'Addr') ?? Buffer.alloc(0), Incarnation: uint(o, 'Incarnation'), Meta: bytes(o, 'Meta'), Name: str(o, 'Name'),
    Port: uint(o, 'Port', 0xffff), State: uint(o, 'State', 3), Vsn: bytes(o, 'Vsn') ?? Buffer.alloc(0),
  };
};
export const readPushPullHeader = (v: Decoded): PushPullHeader => {
  const o = asObject(v, 'pushPullHeader');
  return { Join: bool(o, 'Join'), Nodes: uint(o, 'Nodes', 1 << 20), UserStateLen: uint(o, 'UserStateLen', 20 << 20) };
};

/** The push/pull message: header, node states back to back, then the raw user state. */
export function pushPull(join: boolean, nodes: PushNodeState[], userState: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from([MsgType.pushPull]),
    encode({ Join: join, Nodes: nodes.length, UserStateLen: userState.length }),
    ...nodes.map((n) => encode({ ...n })),
    userState,
  ]);
}

/** Parses a push/pull body (after its type byte); throws if incomplete. */
export function readPushPull(body: Buffer): { header: PushPullHeader; nodes: PushNodeState[]; userState: Buffer } {
  const r = new Reader(body);
  const header = readPushPullHeader(r.value());
  const nodes: PushNodeState[] = [];
  for (let i = 0; i < header.Nodes; i++) nodes.push(readPushNodeState(r.value()));
  if (r.remaining < header.UserStateLen) throw new MsgpackTruncated('push/pull: truncated user state');
  const userState = body.subarray(r.pos, r.pos + header.UserStateLen);
  return { header, nodes, userState };
}

export { decode };

// Serf's network coordinate: an 8-dimensional Vivaldi position plus height and adjustment, its distance rule, and its
// form on the wire (the payload of a memberlist ack: version 1, then the msgpack coordinate).

import { asFloat, asObject, decode, encode, float, Float64, MsgpackError } from './go-msgpack.js';

export const DIMENSIONS = 8;
/** Serf's smallest height (10 µs), also a new coordinate's. */
export const HEIGHT_MIN = 10e-6;
/** Serf's ceiling on a coordinate's error estimate, also a new coordinate's. */
export const ERROR_MAX = 1.5;
/** Below this a length counts as zero. */
export const ZERO = 1e-6;
/** The ping-payload version Serf writes in front of the coordinate. */
const PAYLOAD_VERSION = 1;
/**
 * The farthest any component may sit from the origin, in seconds. Serf sets no bound; a peer's coordinate only orders
 * answers (?near=), but a hostile one with absurd values would still drag ours, so they are refused.
 */
const MAX_COMPONENT = 100;

/** Times are in seconds, as in Serf and in Consul's JSON. */
export interface Coordinate {
  vec: number[];
  error: number;
  adjustment: number;
  height: number;
}

export function newCoordinate(): Coordinate {
  return { vec: new Array<number>(DIMENSIONS).fill(0), error: ERROR_MAX, adjustment: 0, height: HEIGHT_MIN };
}

export function isValid(c: Coordinate): boolean {
  return c.vec.length === DIMENSIONS && [...c.vec, c.error, c.adjustment, c.height].every((x) => Number.isFinite(x) && Math.abs(x) <= MAX_COMPONENT)
    && c.error >= 0 && c.height >= 0;
}

function magnitude(v: number[]): number {
  return Math.sqrt(v.reduce((a, x) => a + x * x, 0));
}

/** Vector distance plus both heights, without the adjustments. */
export function rawDistance(a: Coordinate, b: Coordinate): number {
  return magnitude(a.vec.map((x, i) => x - b.vec[i])) + a.height + b.height;
}

/** The estimated round trip between two coordinates, in seconds (adjusted, unless that would make it ≤ 0). */
export function distance(a: Coordinate, b: Coordinate): number {
  const raw = rawDistance(a, b);
  const adjusted = raw + a.adjustment + b.adjustment;
  return adjusted > 0 ? adjusted : raw;
}

/**
 * `c` pushed by `force` seconds along the line from `other` to it (a negative force pulls it closer); the height grows
 * or shrinks in proportion. Two coordinates in one place push apart in a random direction.
 */
export function applyForce(c: Coordinate, force: number, other: Coordinate): Coordinate {
  let diff = c.vec.map((x, i) => x - other.vec[i]);
  let mag = magnitude(diff);
  let unit: number[];
  if (mag > ZERO) unit = diff.map((x) => x / mag);
  else {
    diff = diff.map(() => Math.random() - 0.5);
    const m = magnitude(diff);
    unit = m > ZERO ? diff.map((x) => x / m) : diff.map(() => 0);
    mag = 0;
  }
  const out: Coordinate = { vec: c.vec.map((x, i) => x + unit[i] * force), error: c.error, adjustment: c.adjustment, height: c.height };
  if (mag > ZERO) out.height = Math.max((c.height + other.height) * force / mag + c.height, HEIGHT_MIN);
  return out;
}

/** Consul's JSON form (`Coord` in /v1/coordinate answers). */
export function coordinateJson(c: Coordinate): { Vec: number[]; Error: number; Adjustment: number; Height: number } {
  return { Vec: [...c.vec], Error: c.error, Adjustment: c.adjustment, Height: c.height };
}

/** Our ack payload, as Serf writes its own. */
export function encodePingPayload(c: Coordinate): Buffer {
  const body = encode({ Adjustment: new Float64(c.adjustment), Error: new Float64(c.error), Height: new Float64(c.height), Vec: c.vec.map((x) => new Float64(x)) });
  return Buffer.concat([Buffer.from([PAYLOAD_VERSION]), body]);
}

/** A peer's ack payload; throws on anything but a version-1, valid 8-dimensional coordinate. */
export function decodePingPayload(payload: Buffer): Coordinate {
  if (payload[0] !== PAYLOAD_VERSION) throw new MsgpackError(`ping payload version ${payload[0]} is not ${PAYLOAD_VERSION}`);
  const o = asObject(decode(payload.subarray(1)), 'coordinate');
  const vec = o.Vec;
  if (!Array.isArray(vec) || vec.length !== DIMENSIONS) throw new MsgpackError(`coordinate: Vec must hold ${DIMENSIONS} numbers`);
  const c: Coordinate = {
    vec: vec.map((x) => asFloat(x, 'coordinate Vec')),
    error: float(o, 'Error'), adjustment: float(o, 'Adjustment'), height: float(o, 'Height'),
  };
  if (!isValid(c)) throw new MsgpackError('coordinate: a component is out of range');
  return c;
}

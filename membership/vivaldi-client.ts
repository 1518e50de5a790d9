// This node's network coordinate, moved by Vivaldi after each probe's round trip (Serf's defaults), and the last
// coordinate each peer reported in its ack.

import { applyForce, distance, ERROR_MAX, isValid, newCoordinate, rawDistance, ZERO, type Coordinate } from './network-coordinate.js';

/** Serf's tuning: error and coordinate gains, adjustment window, latency filter size, gravity. */
const CE = 0.25;
const CC = 0.25;
const ADJUSTMENT_WINDOW = 20;
const LATENCY_FILTER = 3;
const GRAVITY_RHO = 150;
/** A round trip longer than this is not a measurement (Serf's bound). */
const MAX_RTT_S = 10;

export class VivaldiClient {
  private coord = newCoordinate();
  private readonly adjustments = new Array<number>(ADJUSTMENT_WINDOW).fill(0);
  private adjustmentIndex = 0;
  private readonly samples = new Map<string, number[]>();
  /** Peers' coordinates as their last ack carried them. */
  private readonly peers = new Map<string, Coordinate>();
  /** How many times our coordinate went invalid and started over. */
  resets = 0;

  get own(): Coordinate {
    return { ...this.coord, vec: [...this.coord.vec] };
  }

  /** A peer's coordinate, if one of its acks has carried one. */
  peer(name: string): Coordinate | undefined {
    return this.peers.get(name);
  }

  peerNames(): string[] {
    return [...this.peers.keys()];
  }

  /** A member that is gone: its samples and coordinate are dropped. */
  forget(name: string): void {
    this.samples.delete(name);
    this.peers.delete(name);
  }

  /**
   * A direct probe of `name` came back after `rttMs`, its ack carrying `other`. Returns false (and changes nothing) for
   * a round trip out of range.
   */
  update(name: string, other: Coordinate, rttMs: number): boolean {
    const rtt = rttMs / 1000;
    if (!(rtt >= 0 && rtt <= MAX_RTT_S) || !isValid(other)) return false;
    this.peers.set(name, other);
    const filtered = this.filter(name, rtt);
    this.vivaldi(other, filtered);
    this.adjust(other, filtered);
    this.gravity();
    if (!isValid(this.coord)) {
      this.resets++;
      this.coord = newCoordinate();
    }
    return true;
  }

  /** The median of the last few samples from one peer, so one slow round trip does not throw the coordinate. */
  private filter(name: string, rtt: number): number {
    const s = this.samples.get(name) ?? [];
    s.push(rtt);
    if (s.length > LATENCY_FILTER) s.shift();
    this.samples.set(name, s);
    const sorted = [...s].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  private vivaldi(other: Coordinate, rtt: number): void {
    const seconds = Math.max(rtt, ZERO);
    // The adjusted estimate, as Serf's updateVivaldi (the adjustment's own samples use the raw one).
    const dist = distance(this.coord, other);
    const wrongness = Math.abs(dist - seconds) / seconds;
    const total = Math.max(this.coord.error + other.error, ZERO);
    const weight = this.coord.error / total;
    const error = Math.min(CE * weight * wrongness + this.coord.error * (1 - CE * weight), ERROR_MAX);
    this.coord = { ...applyForce(this.coord, CC * weight * (seconds - dist), other), error };
  }

  /** The adjustment term: the mean of recent (measured − estimated) gaps, halved as both ends add their own. */
  private adjust(other: Coordinate, rtt: number): void {
    this.adjustments[this.adjustmentIndex] = rtt - rawDistance(this.coord, other);
    this.adjustmentIndex = (this.adjustmentIndex + 1) % ADJUSTMENT_WINDOW;
    this.coord.adjustment = this.adjustments.reduce((a, b) => a + b, 0) / (2 * ADJUSTMENT_WINDOW);
  }

  /** A weak pull towards the origin, so the whole pool's coordinates do not drift away together. */
  private gravity(): void {
    const origin = newCoordinate();
    const d = distance(origin, this.coord);
    this.coord = applyForce(this.coord, -((d / GRAVITY_RHO) ** 2), origin);
  }
}

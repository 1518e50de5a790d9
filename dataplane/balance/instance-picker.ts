// Picking an instance of a routed target: health and subset filter, zone first, outlier ejection, then the target's policy (round robin, random, least request, consistent hash).

import { createHash } from 'node:crypto';
import type { CallPolicy, Target } from '../http/discovery-chain.js';
import { OutlierDetector } from './outlier-detection.js';
import type { Instance } from './service-instances.js';

export class InstancePicker {
  private readonly rr = new Map<string, number>();
  /** Requests in flight per instance, for least_request. */
  private readonly inFlight = new Map<string, number>();
  private readonly outliers: OutlierDetector;

  constructor(
    private readonly instances: (service: string) => Instance[],
    /** The caller's zone (this node's meta "zone"), for zone-aware choice. */
    private readonly localZone: () => string | undefined,
    onEject: (instanceKey: string, forMs: number) => void,
  ) {
    this.outliers = new OutlierDetector(onEject);
  }

  /** The target's instance for this request, or — when it has no healthy one — one of its failover targets'. */
  pickAny(target: Target, tried: Set<string>, hashKey?: string): { target: Target; inst: Instance } | undefined {
    for (const t of [target, ...target.failover]) {
      const inst = this.pick(t, tried, hashKey);
      if (inst) return { target: t, inst };
    }
    return undefined;
  }

  /** The next instance of the target for this request (by its load-balancing policy), skipping ones already tried. */
  pick(target: Target, tried: Set<string>, hashKey?: string): Instance | undefined {
    const matching = this.instances(target.service).filter((i) => (target.onlyPassing ? i.passing : i.healthy) && target.filter({ service: i.service, nodeMeta: i.nodeMeta }));
    // Zone-aware: instances in the caller's zone (node meta "zone") first, others only when it has none left.
    const zone = this.localZone();
    const local = zone ? matching.filter((i) => i.nodeMeta.zone === zone && !tried.has(i.key) && !this.outliers.ejected(i.key)) : [];
    const all = local.length ? local : matching;
    const fresh = all.filter((i) => !tried.has(i.key));
    // Ejected instances only when nothing else is left (a panic threshold of all).
    const live = fresh.filter((i) => !this.outliers.ejected(i.key));
    const left = live.length ? live : fresh;
    if (left.length === 0) return undefined;
    if (hashKey !== undefined) {
      // Consistent hashing by rendezvous (highest random weight): a key keeps its instance while that instance
      // stays, and only the keys of an instance that goes move. ring_hash and maglev both use it here.
      let best = left[0];
      let bestScore = '';
      for (const i of left) {
        const score = createHash('sha1').update(`${hashKey}\0${i.key}`).digest('hex');
        if (score > bestScore) { bestScore = score; best = i; }
      }
      return best;
    }
    if (target.lbPolicy === 'random') return left[Math.floor(Math.random() * left.length)];
    if (target.lbPolicy === 'least_request' && left.length > 1) {
      // Power of two choices: the less loaded of two random instances.
      const x = left[Math.floor(Math.random() * left.length)];
      let y = left[Math.floor(Math.random() * (left.length - 1))];
      if (y === x) y = left[left.length - 1];
      return (this.inFlight.get(x.key) ?? 0) <= (this.inFlight.get(y.key) ?? 0) ? x : y;
    }
    const k = `${target.service}/${target.subset}`;
    const n = this.rr.get(k) ?? 0;
    this.rr.set(k, n + 1);
    return left[n % left.length];
  }

  /** Counts a request in flight to an instance (least_request); call the returned function when it is done. */
  started(inst: Instance): () => void {
    this.inFlight.set(inst.key, (this.inFlight.get(inst.key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight.set(inst.key, (this.inFlight.get(inst.key) ?? 1) - 1);
    };
  }

  /** Feeds outlier detection with an attempt's outcome. */
  outcome(target: Target, inst: Instance, failed: boolean, policy: CallPolicy): void {
    if (!failed) return this.outliers.success(inst.key);
    const peers = this.instances(target.service).filter((i) => target.filter({ service: i.service, nodeMeta: i.nodeMeta }));
    this.outliers.failure(inst.key, peers.length, peers.filter((i) => this.outliers.ejected(i.key)).length, policy.outlier);
  }
}

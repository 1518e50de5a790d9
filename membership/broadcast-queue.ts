// memberlist's transmit-limited broadcast queue: fewest sends first, then longest, then newest; keyed items replace older ones.

const MAX_DEPTH = 4096;

interface Item { key?: string; msg: Buffer; transmits: number; id: number }

export class BroadcastQueue {
  private items: Item[] = [];
  private seq = 0;

  constructor(private readonly retransmitMult: number, private readonly numNodes: () => number) {}

  /** Queues a message; one with the same key (a node's name) replaces the queued one. */
  queue(msg: Buffer, key?: string): void {
    if (key !== undefined) this.items = this.items.filter((i) => i.key !== key);
    this.items.push({ key, msg, transmits: 0, id: ++this.seq });
    // With nobody to gossip to the queue only grows: keep the newest, as Serf bounds its queue depth.
    if (this.items.length > MAX_DEPTH) this.items.splice(0, this.items.length - MAX_DEPTH);
  }

  get length(): number {
    return this.items.length;
  }

  private limit(): number {
    return this.retransmitMult * Math.ceil(Math.log10(this.numNodes() + 1));
  }

  /** Messages that fit in `budget` bytes (each costing its length + `overhead`), counted as sent once more. */
  take(overhead: number, budget: number): Buffer[] {
    const out: Buffer[] = [];
    const limit = this.limit();
    this.items.sort((a, b) => a.transmits - b.transmits || b.msg.length - a.msg.length || b.id - a.id);
    let used = 0;
    for (const item of this.items) {
      if (out.length >= 127) break;
      if (used + item.msg.length + overhead > budget) continue;
      used += item.msg.length + overhead;
      out.push(item.msg);
      item.transmits++;
    }
    this.items = this.items.filter((i) => i.transmits < limit);
    return out;
  }
}

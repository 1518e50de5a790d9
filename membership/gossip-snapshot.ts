// The gossip peers snapshot: who we last saw alive and whether we left on purpose, so a restart rejoins by itself.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { NodemeshError } from '../lib/errors.js';
import { StateFile } from '../lib/state-file.js';

export interface PeerSnapshot {
  /** True after a graceful leave: a restart does not rejoin unless rejoin_after_leave is set (as Serf). */
  left: boolean;
  /** host:port of the members last seen alive. */
  peers: string[];
}

export class PeerSnapshotFile {
  private current: PeerSnapshot = { left: false, peers: [] };
  private readonly file: StateFile<PeerSnapshot>;

  constructor(dataDir: string, private readonly log: Logger) {
    const dir = join(dataDir, 'serf');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = new StateFile(join(dir, 'peers.json'), () => this.current);
  }

  /** The previous run's snapshot; a missing or damaged file is no snapshot (it only speeds up rejoining). */
  async load(): Promise<PeerSnapshot | undefined> {
    try {
      const s = await this.file.load();
      if (!s) return undefined;
      if (typeof s.left !== 'boolean' || !Array.isArray(s.peers) || !s.peers.every((p) => typeof p === 'string' && /^[^\s:]+:\d{1,5}$/.test(p))) throw new NodemeshError('GOSSIP_SNAPSHOT_INVALID', 'unexpected shape');
      this.current = { left: s.left, peers: s.peers.slice(0, 64) };
      return this.current;
    } catch (e) {
      this.log.warn({ path: this.file.path, err: (e as Error).message }, 'gossip peers snapshot ignored');
      return undefined;
    }
  }

  /**
   * Saves the live peers if they changed since the last save. An empty list keeps the last known
   * peers: a node left alone still remembers where the pool was.
   */
  record(peers: string[]): void {
    if (!peers.length) return;
    const sorted = [...peers].sort();
    if (!this.current.left && sorted.join(',') === this.current.peers.join(',')) return;
    this.current = { left: false, peers: sorted };
    this.file.save().catch((e: Error) => this.log.warn({ err: e.message }, 'could not save the gossip peers snapshot'));
  }

  async markLeft(): Promise<void> {
    this.current = { ...this.current, left: true };
    await this.file.save().catch((e: Error) => this.log.warn({ err: e.message }, 'could not save the gossip peers snapshot'));
  }
}

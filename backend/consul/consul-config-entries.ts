// Config entries from Consul (/v1/config/:kind, one blocking query per kind), for this agent's routing in Consul mode.

import { ChangeFeed } from '../../lib/change-feed.js';
import { KINDS, type ConfigEntry, type Kind } from '../../model/config-entry.js';
import { BlockingWatch } from './blocking-watch.js';
import type { ConsulHttp } from './consul-http.js';

export class ConsulConfigEntries {
  readonly feed = new ChangeFeed();
  private lastIndex = 1;
  private readonly byKind = new Map<Kind, Map<string, ConfigEntry>>();
  private readonly watches: BlockingWatch<ConfigEntry[]>[];

  constructor(http: ConsulHttp, onError: (e: Error) => void, onOk: () => void) {
    // Consul 1.8 has no mesh entry (a watch on it would only fail): in Consul mode nodemesh's strict request normalization applies.
    this.watches = KINDS.filter((kind) => kind !== 'mesh').map((kind) => new BlockingWatch<ConfigEntry[]>(http, {
      path: `/config/${kind}`,
      onData: (list) => {
        onOk();
        const next = new Map((Array.isArray(list) ? list : []).filter((e) => e && typeof e.Name === 'string').map((e) => [e.Name, { ...e, Kind: kind }]));
        const prev = this.byKind.get(kind);
        if (prev && JSON.stringify([...prev]) === JSON.stringify([...next])) return;
        this.byKind.set(kind, next);
        this.lastIndex++;
        this.feed.notify();
      },
      onError,
    }));
  }

  get index(): number {
    return this.lastIndex;
  }

  /** A bound function: it is handed around as a lookup. */
  readonly get = (kind: Kind, name: string): ConfigEntry | undefined => this.byKind.get(kind)?.get(name);

  poke(): void {
    for (const w of this.watches) w.poke();
  }

  stop(): void {
    for (const w of this.watches) w.stop();
    this.feed.close();
  }
}

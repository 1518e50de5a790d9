// Intentions as a replicated set on the gossip pool: whole-set exchange in push/pull, local writes gossiped at once,
// every record merged last-writer-wins by its hybrid logical clock (tombstones included).

import type { ReplicatedSet } from '../catalog/replication.js';
import type { IntentionRecord, IntentionStore } from './intention-store.js';

function isRecord(r: unknown): r is IntentionRecord {
  const x = r as IntentionRecord;
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.deleted === 'boolean'
    && typeof x.hlc?.wall === 'number' && typeof x.hlc?.logical === 'number' && typeof x.hlc?.node === 'string'
    && (x.deleted || (typeof x.intention === 'object' && x.intention !== null && typeof x.intention.SourceName === 'string' && typeof x.intention.DestinationName === 'string'));
}

export function intentionsReplicatedSet(store: IntentionStore): ReplicatedSet {
  return {
    name: 'intentions',
    exportAll: () => store.allRecords(),
    merge: (records) => {
      let changed = 0;
      for (const r of records) if (isRecord(r) && store.merge(r)) changed++;
      return changed;
    },
    takeLocalChanges: () => store.takeLocalWrites(),
  };
}

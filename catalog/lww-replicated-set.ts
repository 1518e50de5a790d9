// Any last-writer-wins record store as a replicated set on the gossip pool: whole-set exchange in push/pull, local writes
// gossiped at once, every record merged by its hybrid logical clock (tombstones included).

import type { ReplicatedSet } from './replication.js';

/** What replication needs of a last-writer-wins store. */
export interface LwwReplicable {
  allRecords(): unknown[];
  /** Merges one record from a peer (a record of the wrong shape is dropped); whether it changed anything. */
  merge(record: unknown): boolean;
  takeLocalWrites(): unknown[];
}

/** Any last-writer-wins store as a replicated set named `name`. */
export function lwwReplicatedSet(name: string, store: LwwReplicable): ReplicatedSet {
  return {
    name,
    exportAll: () => store.allRecords(),
    merge: (records) => {
      let changed = 0;
      for (const r of records) if (store.merge(r)) changed++;
      return changed;
    },
    takeLocalChanges: () => store.takeLocalWrites(),
  };
}

// Pool-wide policy (intentions, config entries) as a replicated set whose every record carries a policy writer's signature.

import { compareHlc, type Hlc } from '../../catalog/hlc.js';
import { isLwwEnvelope, type RecordSeal } from '../../catalog/lww-record-store.js';
import type { ReplicatedSet } from '../../catalog/replication.js';
import { isPolicyAuthority, type AuthorityVerifier } from './authority-verifier.js';

/** What the set needs of a last-writer-wins store. */
export interface SignedLwwStore {
  allRecords(): { sig?: RecordSeal }[];
  /** Takes a record from a peer (validated by the store as strictly as its API); whether it changed anything. */
  merge(record: unknown): boolean;
  takeLocalWrites(): { sig?: RecordSeal }[];
  hlcOf(id: string): Hlc | undefined;
}

export interface PolicySetEvents {
  /** A record whose signer is not known yet: its chain comes with a push/pull from the node that wrote it. */
  unknownSigner(node: string): void;
  refused(set: string, id: string, reason: string, from: string): void;
}

/**
 * Only signed records travel: what this agent wrote (sealed by its policy key) and what it verified. A record is
 * taken only if it is newer than ours and its seal comes from a policy authority of the pool (a policy writer's
 * certificate, or the root); anything else is refused and counted, never applied.
 */
export function signedPolicySet(name: string, store: SignedLwwStore, verifier: AuthorityVerifier, events: PolicySetEvents): ReplicatedSet {
  const seals = (rs: { sig?: RecordSeal }[]) => rs.flatMap((r) => (r.sig ? [r.sig] : []));
  return {
    name,
    exportAll: () => seals(store.allRecords()),
    takeLocalChanges: () => seals(store.takeLocalWrites()),
    merge: (blobs) => {
      let changed = 0;
      for (const raw of blobs) {
        const blob = raw as Partial<RecordSeal> | null;
        if (typeof blob !== 'object' || blob === null || typeof blob.body !== 'string' || blob.body.length > 1024 * 1024) {
          events.refused(name, '?', 'not a signed record', '?');
          continue;
        }
        let rec: unknown;
        try {
          rec = JSON.parse(blob.body);
        } catch {
          events.refused(name, '?', 'unparsable record', '?');
          continue;
        }
        if (!isLwwEnvelope(rec)) {
          events.refused(name, '?', 'malformed record', '?');
          continue;
        }
        const mine = store.hlcOf(rec.id);
        if (mine && compareHlc(mine, rec.hlc) >= 0) continue; // not newer: nothing to check or take
        const from = rec.hlc.node.slice(0, 128);
        const verdict = verifier.check(blob, blob.body);
        if (verdict === 'unknown') {
          events.unknownSigner(from);
          continue;
        }
        if ('error' in verdict) {
          events.refused(name, rec.id.slice(0, 128), verdict.error, from);
          continue;
        }
        if (!isPolicyAuthority(verdict)) {
          events.refused(name, rec.id.slice(0, 128), `signed by node ${(verdict as { node?: string }).node ?? '?'}, not a policy authority`, from);
          continue;
        }
        if (store.merge({ ...rec, sig: { body: blob.body, by: blob.by!, sig: blob.sig! } })) changed++;
      }
      return changed;
    },
  };
}

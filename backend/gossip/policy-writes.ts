// Writes of pool-wide policy (intentions, config entries): applied and signed here on a policy writer, forwarded to one elsewhere.

import { NodemeshError } from '../../lib/errors.js';
import type { RecordSeal } from '../../catalog/lww-record-store.js';
import type { Intention, IntentionInput } from '../../model/intention.js';
import type { IntentionStore } from '../../policy/intention-store.js';
import { sameSecret } from '../../lib/same-secret.js';
import type { ConfigEntryStore } from '../../policy/config-entry-store.js';
import type { Kind } from '../../model/config-entry.js';

/** One policy write, as the API takes it and as it is forwarded. */
export type PolicyOp =
  | { op: 'intention.create'; input: IntentionInput }
  | { op: 'intention.update'; id: string; input: IntentionInput }
  | { op: 'intention.delete'; id: string }
  | { op: 'entry.write'; raw: unknown; cas?: number }
  | { op: 'entry.delete'; kind: Kind; name: string };

/** What a write answers: the API's result, and the signed records it made (a forwarder takes them at once). */
export interface PolicyResult { result: unknown; records: { set: 'intentions' | 'config-entries'; sig: RecordSeal }[] }

export interface PolicyWrites {
  /** `local`: this agent signs; `forward`: a policy writer does. */
  readonly mode: 'local' | 'forward';
  /** Whether a request's token may write policy here (a forwarder passes the token on: the writer decides). */
  tokenAllows(token: string | undefined): boolean;
  apply(op: PolicyOp, token: string | undefined): Promise<PolicyResult>;
}

/** The config entry's store key from a raw PUT /v1/config body (field names are case-insensitive, as the decoder takes them). */
function entryKeyOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const field = (n: string) => Object.entries(raw).find(([k]) => k.toLowerCase() === n)?.[1];
  const kind = field('kind');
  const name = field('name');
  return typeof kind === 'string' && typeof name === 'string' ? `${kind.toLowerCase()}/${name}` : undefined;
}

/** The writes of a policy writer (or of an agent holding the root key): applied to its stores, sealed by its policy key. */
export class LocalPolicyWrites implements PolicyWrites {
  readonly mode = 'local' as const;

  constructor(
    private readonly intentions: IntentionStore,
    private readonly entries: ConfigEntryStore,
    /** operator_token, else acl_token; none: writes are open (dev, loopback only). */
    private readonly token: string | undefined,
  ) {}

  tokenAllows(token: string | undefined): boolean {
    return this.token === undefined || (token !== undefined && sameSecret(token, this.token));
  }

  async apply(op: PolicyOp, token: string | undefined): Promise<PolicyResult> {
    if (!this.tokenAllows(token)) throw new NodemeshError('POLICY_TOKEN_DENIED', 'Permission denied: a write of pool-wide policy needs the operator token', 403);
    const sealOf = (set: 'intentions' | 'config-entries', id: string | undefined): PolicyResult['records'] => {
      const rec = id === undefined ? undefined : set === 'intentions' ? this.intentions.record(id) : this.entries.record(id);
      return rec?.sig ? [{ set, sig: rec.sig }] : [];
    };
    switch (op.op) {
      case 'intention.create': {
        const created: Intention = await this.intentions.create(op.input);
        return { result: created, records: sealOf('intentions', created.ID) };
      }
      case 'intention.update': {
        const updated = await this.intentions.update(op.id, op.input);
        return { result: updated, records: sealOf('intentions', op.id) };
      }
      case 'intention.delete':
        await this.intentions.delete(op.id);
        return { result: true, records: sealOf('intentions', op.id) };
      case 'entry.write': {
        const written = await this.entries.write(op.raw, op.cas);
        return { result: written, records: written ? sealOf('config-entries', entryKeyOf(op.raw)) : [] };
      }
      case 'entry.delete':
        await this.entries.delete(op.kind, op.name);
        return { result: true, records: sealOf('config-entries', `${op.kind}/${op.name}`) };
    }
  }
}

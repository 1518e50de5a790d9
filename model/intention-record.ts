// Admission of an intention another agent (or an older version of this one) wrote: decoded as strictly as the API's body, validated by the API's rules, computed fields recomputed.

import type { Intention, IntentionInput } from './intention.js';
import { intentionHash, precedence, validateIntention, withDefaults } from './intention.js';

/** An intention ID (as Consul's: a UUID). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An intention's fields as the API's create and update build them from a validated input (`withDefaults` applied), precedence computed. */
export function intentionFields(id: string, input: IntentionInput): Omit<Intention, 'Hash' | 'CreatedAt' | 'UpdatedAt' | 'CreateIndex' | 'ModifyIndex'> {
  const fields = {
    ID: id,
    Description: input.Description ?? '',
    SourceNS: input.SourceNS!, SourceName: input.SourceName!, DestinationNS: input.DestinationNS!, DestinationName: input.DestinationName!,
    SourceType: input.SourceType!, Action: (input.Action ?? '') as Intention['Action'],
    ...(input.Permissions?.length ? { Permissions: input.Permissions } : {}),
    DefaultAddr: input.DefaultAddr ?? '', DefaultPort: input.DefaultPort ?? 0, Meta: input.Meta ?? {},
    Precedence: 0,
  };
  fields.Precedence = precedence(fields);
  return fields;
}

type FieldType = 'string' | 'int' | 'uint' | 'bool' | 'map[string]string' | { array: FieldType } | { struct: Fields };
type Fields = Readonly<Record<string, FieldType>>;

/**
 * The API's intention schema (INTENTION_SCHEMA in api/routes-connect.ts): the same fields and types, with the
 * read-only fields (which the API accepts and drops) typed as this agent stores them. Keys are the canonical ones only:
 * a stored record is always written that way.
 */
const HEADER: FieldType = { struct: { Name: 'string', Present: 'bool', Exact: 'string', Prefix: 'string', Suffix: 'string', Regex: 'string', Invert: 'bool' } };
const PERMISSION: FieldType = { struct: {
  Action: 'string',
  HTTP: { struct: { PathExact: 'string', PathPrefix: 'string', PathRegex: 'string', Methods: { array: 'string' }, Header: { array: HEADER } } },
} };
const INTENTION: Fields = {
  ID: 'string', Description: 'string', SourceNS: 'string', SourceName: 'string', DestinationNS: 'string', DestinationName: 'string',
  SourceType: 'string', Action: 'string', DefaultAddr: 'string', DefaultPort: 'int', Meta: 'map[string]string',
  Permissions: { array: PERMISSION },
  Precedence: 'int', CreatedAt: 'string', UpdatedAt: 'string', Hash: 'string', CreateIndex: 'uint', ModifyIndex: 'uint',
};

/** Timestamps are ISO 8601 texts; anything longer is not one. */
const MAX_TIMESTAMP_CHARS = 64;

class Refusal extends Error {}

const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v) : Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** A value decoded against its type into a fresh object (unknown keys refused, null as absent, as the API's decoder). */
function decode(v: unknown, t: FieldType, path: string): unknown {
  if (v === null || v === undefined) return undefined; // undefined: a record handed over in-process, not through JSON
  const wrong = () => new Refusal(`${path}: ${show(v)} is not of type ${typeof t === 'string' ? t : 'array' in t ? 'array' : 'object'}`);
  if (typeof t === 'object') {
    if ('array' in t) {
      if (!Array.isArray(v)) throw wrong();
      return v.map((x, n) => {
        const d = decode(x, t.array, `${path}[${n}]`);
        if (d === undefined) throw new Refusal(`${path}[${n}] is null`);
        return d;
      });
    }
    if (!isObject(v)) throw wrong();
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (!has(t.struct, k)) throw new Refusal(`unknown field ${show(k)}${path ? ` in ${path}` : ''}`);
      const d = decode(x, t.struct[k], path ? `${path}.${k}` : k);
      if (d !== undefined) out[k] = d;
    }
    return out;
  }
  switch (t) {
    case 'string':
      if (typeof v !== 'string') throw wrong();
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw wrong();
      return v;
    case 'int':
    case 'uint':
      if (!Number.isSafeInteger(v) || (t === 'uint' && (v as number) < 0)) throw wrong();
      return v;
    case 'map[string]string':
      if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) throw wrong();
      return Object.fromEntries(Object.entries(v));
  }
}

/**
 * The intention a record carries, as this agent stores it: decoded with the API's types, validated by the API's
 * rules (`withDefaults` + `validateIntention`, as create does), rebuilt from the allowed fields, Precedence and Hash
 * recomputed (never the writer's); or why it is refused. `id` is the record's id, which must be the intention's ID.
 */
export function admitIntention(raw: unknown, id: string): Intention | string {
  if (!UUID.test(id)) return `record id ${show(id)} is not a UUID`;
  if (!isObject(raw)) return 'a live intention record carries no intention';
  let v: Record<string, unknown>;
  try {
    v = decode(raw, { struct: INTENTION }, '') as Record<string, unknown>;
  } catch (e) {
    if (e instanceof Refusal) return `intention decode failed: ${e.message}`;
    throw e;
  }
  if (v.ID !== id) return `intention ID ${show(v.ID)} is not the record's id ${show(id)}`;
  for (const k of ['CreatedAt', 'UpdatedAt'] as const) {
    const t = v[k];
    if (typeof t !== 'string' || t.length === 0 || t.length > MAX_TIMESTAMP_CHARS) return `intention ${k} must be a timestamp of at most ${MAX_TIMESTAMP_CHARS} characters`;
  }
  // What the API's create takes (read-only fields dropped), with its defaults.
  const input = withDefaults({
    Description: v.Description as string | undefined, SourceNS: v.SourceNS as string | undefined, SourceName: v.SourceName as string | undefined,
    DestinationNS: v.DestinationNS as string | undefined, DestinationName: v.DestinationName as string | undefined,
    SourceType: v.SourceType as string | undefined, Action: v.Action as IntentionInput['Action'],
    Permissions: v.Permissions as Intention['Permissions'], DefaultAddr: v.DefaultAddr as string | undefined,
    DefaultPort: v.DefaultPort as number | undefined, Meta: v.Meta as Record<string, string> | undefined,
  });
  const errs = validateIntention(input);
  if (errs.length) return `invalid intention: ${errs.join('; ')}`;
  const fields = intentionFields(id, input);
  return {
    ...fields, Hash: intentionHash(fields), CreatedAt: v.CreatedAt as string, UpdatedAt: v.UpdatedAt as string,
    CreateIndex: (v.CreateIndex as number | undefined) ?? 0, ModifyIndex: (v.ModifyIndex as number | undefined) ?? 0,
  };
}

// Go-style strict JSON decoding: case-insensitive and snake_case keys, unknown fields and wrong types rejected with Go's texts.

import { parseGoDuration } from './go-duration.js';

export type FieldType =
  | 'string' | 'int' | 'uint' | 'float' | 'bool' | 'duration' | 'any'
  | 'map[string]string' | 'map[string][]string'
  | { array: FieldType }
  | { map: FieldType }
  | { struct: Schema };

/** Canonical (PascalCase) field name → type. */
export type Schema = Record<string, FieldType>;

export class DecodeError extends Error {}

const norm = (k: string) => k.toLowerCase().replace(/_/g, '');

function goType(t: FieldType): string {
  if (typeof t === 'string') {
    if (t === 'duration') return 'time.Duration';
    if (t === 'any') return 'interface {}';
    if (t === 'float') return 'float32';
    return t;
  }
  if ('array' in t) return `[]${goType(t.array)}`;
  if ('map' in t) return `map[string]${goType(t.map)}`;
  return 'struct';
}

function jsonType(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return `number ${v}`;
  return typeof v;
}

function mismatch(v: unknown, path: string, t: FieldType): DecodeError {
  const kind = typeof v === 'number' ? 'number' : jsonType(v);
  return new DecodeError(`json: cannot unmarshal ${kind} into Go struct field .${path} of type ${goType(t)}`);
}

function decodeValue(v: unknown, t: FieldType, path: string): unknown {
  if (v === null) return undefined;
  if (typeof t === 'object') {
    if ('array' in t) {
      if (!Array.isArray(v)) throw mismatch(v, path, t);
      // As Go: a null element decodes to its type's zero value (an empty struct, "", 0, false), never a hole.
      return v.map((item) => (item === null ? zeroValue(t.array) : decodeValue(item, t.array, path)));
    }
    if ('map' in t) {
      if (typeof v !== 'object' || Array.isArray(v)) throw mismatch(v, path, t);
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
        const d = decodeValue(item, t.map, path);
        if (d !== undefined) out[k] = d;
      }
      return out;
    }
    if (typeof v !== 'object' || Array.isArray(v)) throw mismatch(v, path, t);
    return decodeStruct(v as Record<string, unknown>, t.struct, path);
  }
  switch (t) {
    case 'any':
      return v;
    case 'string':
      if (typeof v !== 'string') throw mismatch(v, path, t);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw mismatch(v, path, t);
      return v;
    case 'float':
      if (typeof v !== 'number' || !Number.isFinite(v)) throw mismatch(v, path, t);
      return v;
    case 'int':
    case 'uint':
      if (typeof v !== 'number') throw mismatch(v, path, t);
      if (!Number.isInteger(v) || (t === 'uint' && v < 0) || Math.abs(v) > Number.MAX_SAFE_INTEGER) {
        throw new DecodeError(`json: cannot unmarshal number ${v} into Go struct field .${path} of type ${t}`);
      }
      return v;
    case 'duration':
      if (typeof v === 'number') return v / 1e6; // Go reads a bare number as nanoseconds
      if (typeof v !== 'string') throw mismatch(v, path, t);
      try {
        return parseGoDuration(v);
      } catch (e) {
        throw new DecodeError((e as Error).message);
      }
    case 'map[string]string':
    case 'map[string][]string': {
      if (typeof v !== 'object' || Array.isArray(v)) throw mismatch(v, path, t);
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
        if (t === 'map[string]string') {
          if (typeof item !== 'string') throw mismatch(item, path, 'string');
          out[k] = item;
        } else {
          if (!Array.isArray(item) || item.some((x) => typeof x !== 'string')) throw mismatch(item, path, { array: 'string' });
          out[k] = item;
        }
      }
      return out;
    }
  }
}

function zeroValue(t: FieldType): unknown {
  if (typeof t === 'object') return 'array' in t ? [] : {};
  switch (t) {
    case 'string': case 'duration': return t === 'string' ? '' : 0;
    case 'int': case 'uint': case 'float': return 0;
    case 'bool': return false;
    case 'map[string]string': case 'map[string][]string': return {};
    default: return null;
  }
}

/** Decodes an object against a schema; the result has only canonical keys. */
export function decodeStruct(input: Record<string, unknown>, schema: Schema, path = ''): Record<string, unknown> {
  const byNorm = new Map(Object.keys(schema).map((k) => [norm(k), k]));
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    const field = byNorm.get(norm(key));
    if (!field) throw new DecodeError(`json: unknown field ${JSON.stringify(key)}`);
    const decoded = decodeValue(value, schema[field], path ? `${path}.${field}` : field);
    if (decoded !== undefined) out[field] = decoded;
  }
  return out;
}

/** Parses a request body and decodes it; the body must be one JSON object. */
export function decodeBody(text: string, schema: Schema): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new DecodeError(text.trim() === '' ? 'EOF' : `invalid character in JSON body: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DecodeError(`json: cannot unmarshal ${jsonType(parsed).split(' ')[0]} into Go value of type struct`);
  }
  return decodeStruct(parsed as Record<string, unknown>, schema);
}

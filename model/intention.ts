// Consul's intention (1.8's fields, and 1.9's L7 Permissions): defaults, validation with Consul's texts, precedence and display.

import { createHash } from 'node:crypto';
import { httpMatchErrors, type HttpMatchSpec } from './http-match.js';
import { NAME_RULE, nameProblem, showName } from './service-names.js';

export type IntentionAction = 'allow' | 'deny';

/** Consul 1.9's L7 rule: the first permission whose HTTP match holds decides the request. */
export interface Permission { Action: IntentionAction; HTTP?: HttpMatchSpec }

export interface Intention {
  ID: string;
  Description: string;
  SourceNS: string;
  SourceName: string;
  DestinationNS: string;
  DestinationName: string;
  SourceType: string;
  /** L4 decision; empty ('') for an L7 intention, whose Permissions decide per request. */
  Action: IntentionAction | '';
  /** L7 rules (Consul 1.9); absent on an L4 intention. */
  Permissions?: Permission[];
  DefaultAddr: string;
  DefaultPort: number;
  Meta: Record<string, string>;
  Precedence: number;
  CreatedAt: string;
  UpdatedAt: string;
  Hash: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** What a client may set; the rest is computed. */
export type IntentionInput = Partial<Pick<Intention,
  'ID' | 'Description' | 'SourceNS' | 'SourceName' | 'DestinationNS' | 'DestinationName' | 'SourceType' | 'Action' | 'DefaultAddr' | 'DefaultPort' | 'Meta' | 'Permissions'>> & { Action?: string };

export const WILDCARD = '*';
export const DEFAULT_NS = 'default';

/**
 * Consul's precedence: the destination's exact parts set a ceiling (9, 6 or 3), and each wildcard
 * part of the source takes one off.
 */
export function precedence(i: Pick<Intention, 'SourceNS' | 'SourceName' | 'DestinationNS' | 'DestinationName'>): number {
  const exact = (...parts: string[]) => parts.filter((p) => p !== WILDCARD).length;
  const max = 3 * exact(i.DestinationNS, i.DestinationName) + 3;
  return max - (2 - exact(i.SourceNS, i.SourceName));
}

/** Validates and fills defaults; returns the error texts Consul would give (empty when valid). */
export function validateIntention(i: IntentionInput): string[] {
  const errs: string[] = [];
  const fields: [string, string | undefined][] = [
    ['SourceNS', i.SourceNS], ['SourceName', i.SourceName], ['DestinationNS', i.DestinationNS], ['DestinationName', i.DestinationName],
  ];
  for (const [name, v] of fields) {
    if (!v) { errs.push(`${name} must be set`); continue; }
    if (v.includes(WILDCARD)) {
      if (v !== WILDCARD) errs.push(`${name}: wildcard character '*' cannot be used with partial values`);
      continue;
    }
    if (v.length > 256) { errs.push(`${name}: must be at most 256 characters`); continue; }
    // Names compare case-insensitively (ASCII): look-alike Unicode ('pаyments' with a Cyrillic 'а') could otherwise
    // name a service no certificate can carry, and read as another one to whoever reviews the intention.
    const problem = nameProblem(v);
    if (problem) errs.push(`${name}: ${showName(v)} is not a valid ${name.endsWith('NS') ? 'namespace' : 'service name'} (${problem}): ${NAME_RULE}, or '*' alone`);
  }
  if (i.SourceNS === WILDCARD && i.SourceName && i.SourceName !== WILDCARD) errs.push('SourceName: exact value cannot follow wildcard namespace');
  if (i.DestinationNS === WILDCARD && i.DestinationName && i.DestinationName !== WILDCARD) errs.push('DestinationName: exact value cannot follow wildcard namespace');
  if ((i.Description ?? '').length > 512) errs.push('Description exceeds maximum length 512');
  const meta = Object.entries(i.Meta ?? {});
  if (meta.length > 64) errs.push('Meta exceeds maximum element count 64');
  for (const [k, v] of meta) {
    if (k.length > 128) errs.push(`Meta key ${JSON.stringify(k)} exceeds maximum length 128`);
    if (v.length > 512) errs.push(`Meta value for key ${JSON.stringify(k)} exceeds maximum length 512`);
  }
  if (i.Permissions !== undefined && i.Permissions.length > 0) {
    // Consul 1.9: an L7 intention has no Action of its own; each permission has one.
    if (i.Action) errs.push('Action must be empty when Permissions are present');
    i.Permissions.forEach((p, n) => {
      if (p.Action !== 'allow' && p.Action !== 'deny') errs.push(`Permissions[${n}].Action must be set to 'allow' or 'deny'`);
      if (!p.HTTP || Object.keys(p.HTTP).length === 0) errs.push(`Permissions[${n}].HTTP must be set: an L7 permission matches on HTTP attributes`);
      else errs.push(...httpMatchErrors(p.HTTP, `Permissions[${n}].HTTP`));
    });
  } else if (i.Action !== 'allow' && i.Action !== 'deny') errs.push("Action must be set to 'allow' or 'deny'");
  if (i.SourceType !== 'consul') errs.push("SourceType must be set to 'consul'");
  if (i.DefaultPort !== undefined && (i.DefaultPort < 0 || i.DefaultPort > 65535)) errs.push('DefaultPort must be between 0 and 65535');
  return errs;
}

/** Fills Consul's defaults (namespaces `default`, SourceType `consul`). */
export function withDefaults(i: IntentionInput): IntentionInput {
  return { ...i, SourceNS: i.SourceNS || DEFAULT_NS, DestinationNS: i.DestinationNS || DEFAULT_NS, SourceType: i.SourceType || 'consul' };
}

export function intentionHash(i: Omit<Intention, 'Hash' | 'CreateIndex' | 'ModifyIndex' | 'CreatedAt' | 'UpdatedAt'>): string {
  const h = createHash('sha256');
  for (const v of [i.ID, i.Description, i.SourceNS, i.SourceName, i.DestinationNS, i.DestinationName, i.SourceType, i.Action, i.DefaultAddr, String(i.DefaultPort), String(i.Precedence)]) h.update(`${v}\0`);
  for (const k of Object.keys(i.Meta).sort()) h.update(`${k}=${i.Meta[k]}\0`);
  if (i.Permissions) h.update(JSON.stringify(i.Permissions));
  return h.digest('base64');
}

/** `ALLOW default/web => default/db (ID: …, Precedence: 9)`, as Consul prints an intention. */
export function describeIntention(i: Intention): string {
  return `${i.Permissions?.length ? 'L7' : i.Action.toUpperCase()} ${i.SourceNS}/${i.SourceName} => ${i.DestinationNS}/${i.DestinationName} (ID: ${i.ID}, Precedence: ${i.Precedence})`;
}

/** Consul's list order: precedence high to low, then source and destination names. */
export function compareIntentions(a: Intention, b: Intention): number {
  return b.Precedence - a.Precedence
    || a.SourceNS.localeCompare(b.SourceNS) || a.SourceName.localeCompare(b.SourceName)
    || a.DestinationNS.localeCompare(b.DestinationNS) || a.DestinationName.localeCompare(b.DestinationName)
    // Two agents may create the same pair concurrently: the ID decides, so every agent decides alike.
    || (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0);
}

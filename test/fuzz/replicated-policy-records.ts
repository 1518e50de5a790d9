// The `replicated-policy-records` fuzz surface: well-formed, policy-signed but hostile intention and config-entry records merged
// through the signature check into real stores, then every admitted one decided and matched.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIntentionBody } from '../../api/routes-connect.js';
import { ConfigEntryStore } from '../../policy/config-entry-store.js';
import { decodeConfigEntry, type ConfigEntry, type Kind } from '../../model/config-entry.js';
import { callPolicy, compileChain } from '../../dataplane/http/discovery-chain.js';
import { decide, decideRequest } from '../../policy/decision.js';
import type { RequestFacts } from '../../model/http-match.js';
import { intentionHash, precedence, validateIntention, withDefaults, type Intention } from '../../model/intention.js';
import { IntentionStore } from '../../policy/intention-store.js';
import { Rng, mutateJson } from './mutate.js';
import { createPrivateKey } from 'node:crypto';
import { policyAuthorityUri } from '../../identity/authority-ids.js';
import { CertificateAuthority } from '../../identity/ca/certificate-authority.js';
import { createPolicyCert, importPrivateKey } from '../../identity/ca/x509-certs.js';
import { AuthorityVerifier } from '../../identity/authority/authority-verifier.js';
import { RecordSigner } from '../../identity/authority/record-signer.js';
import { signedPolicySet } from '../../identity/authority/signed-policy-set.js';
import { ChangeFeed } from '../../lib/change-feed.js';
import type { TrustSource } from '../../identity/trust-sources.js';

/** A pool's root and one policy writer: every case is signed by it, as a policy writer (or a stolen policy key) would. */
const root = await CertificateAuthority.createRoot();
const policy = await createPolicyCert({ issuerCertPem: root.certPem, issuerKey: (await importPrivateKey(root.keyPem)).key, trustDomain: root.trustDomain, uri: policyAuthorityUri(root.trustDomain, 'fuzz') });
const signer = new RecordSigner(createPrivateKey(policy.keyPem), [policy.certPem, root.certPem]);
const trust: TrustSource = { feed: new ChangeFeed(), index: 1, trustDomain: root.trustDomain, pems: () => [root.certPem], rootsView: () => { throw new Error('not used'); } };

type Json = Record<string, any>;

const HLC = { wall: 1_700_000_000_000, logical: 0, node: 'fuzz-peer' };
const T = '2026-01-01T00:00:00.000Z';
const ID1 = '6a4c3f0e-7d5b-4c1a-9e2f-0b1c2d3e4f50';
const ID2 = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
const ID3 = 'c0ffee00-1234-4abc-8def-0123456789ab';

const intention = (id: string, fields: Json): Json => ({
  ID: id, Description: '', SourceNS: 'default', SourceName: 'web', DestinationNS: 'default', DestinationName: 'api', SourceType: 'consul', Action: 'allow',
  DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 9, CreatedAt: T, UpdatedAt: T, Hash: 'h', CreateIndex: 2, ModifyIndex: 2, ...fields,
});
const entry = (e: Json): Json => ({ id: `${e.Kind}/${e.Name}`, hlc: HLC, deleted: false, entry: { ...e, CreateIndex: 3, ModifyIndex: 3 } });

/** Valid records, as agents write them: the generator's starting points. */
const SEEDS: Json[] = [
  { id: ID1, hlc: HLC, deleted: false, intention: intention(ID1, {}) },
  { id: ID2, hlc: HLC, deleted: false, intention: intention(ID2, { SourceName: '*', Action: '', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/p/', Methods: ['GET'], Header: [{ Name: 'x', Regex: 'a.*' }] } }, { Action: 'deny', HTTP: { PathRegex: '/admin/.*' } }] }) },
  { id: ID3, hlc: HLC, deleted: false, intention: intention(ID3, { DestinationName: 'db', Action: 'deny', Meta: { team: 'x' }, Description: 'd' }) },
  { id: ID1, hlc: HLC, deleted: true },
  entry({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }),
  entry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } }),
  entry({ Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', ConnectTimeout: '3s', Subsets: { v1: { Filter: 'Service.Meta.version == v1' } }, LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x' }] } }),
  entry({ Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 90.5, ServiceSubset: 'v1' }, { Weight: 9.5 }] }),
  entry({ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathRegex: '/a/.*', Header: [{ Name: 'x', Prefix: 'y' }], QueryParam: [{ Name: 'q', Regex: '[0-9]+' }], Methods: ['GET'] } }, Destination: { ServiceSubset: 'v1', RequestTimeout: '1s', NumRetries: 2 } }] }),
  { id: 'service-router/api', hlc: HLC, deleted: true },
];

/** Regular expressions JavaScript refuses, Go-only syntax, and odd but valid ones. */
const REGEXES = ['(', ')', '[', '*', '+a', '?', '\\', 'a{2,1}', '[z-a]', '(?<n>a)(?<n>b)', '\\k<x>', '(?P<name>a)', '(?i)abc', '(?=a)b', '(?<=a)b', 'a)|(b',
  ')|(', '\\1(a)', '.*', '', '^$', '\\p{L}', '[\\d-z]', '\u0000', '💥+', 'x'.repeat(5000), '(a+)+b', '(a|a)*c'];
/** Names the API refuses, look-alikes, and valid ones. */
const NAMES = ['web', 'api', '*', 'we*', 'wеb', 'ｗｅｂ', 'web\u200b', 'web\u0000', 'a/b', '..', '.', '', ' ', 'WEB', 'ß', 'İ', 'K', '💥', 'a'.repeat(257), 'a'.repeat(256), '__proto__', 'constructor'];
const NUMBERS = [1000, -1, 0, 9, 2 ** 53, 1e308, 9.5, Number.MAX_SAFE_INTEGER, '9', null, true];

function deep(rng: Rng): unknown {
  let v: unknown = rng.pick(['x', 1, null, []]);
  for (let i = 1 + rng.int(60); i > 0; i--) v = rng.int(2) ? [v] : { k: v };
  return v;
}

/** Every object (with its path) inside a record's value, to aim a tweak at. */
function objects(v: unknown, out: Json[] = [], depth = 0): Json[] {
  if (depth > 8 || typeof v !== 'object' || v === null) return out;
  if (!Array.isArray(v)) out.push(v as Json);
  for (const x of Object.values(v)) objects(x, out, depth + 1);
  return out;
}

/** One hostile change to a record (value and, rarely, envelope). */
function tweak(rng: Rng, rec: Json): void {
  const value: unknown = rec.intention ?? rec.entry;
  const targets = objects(value);
  const o = targets.length ? rng.pick(targets) : rec;
  switch (rng.int(10)) {
    case 0: case 1: {
      const http = targets.filter((t) => 'PathPrefix' in t || 'PathRegex' in t || 'Methods' in t || 'Header' in t);
      const h = http.length ? rng.pick(http) : o;
      const which = rng.int(3);
      if (which === 0) { delete h.PathPrefix; delete h.PathExact; h.PathRegex = rng.pick(REGEXES); }
      else if (which === 1) h.Header = [{ Name: rng.pick(NAMES), Regex: rng.pick(REGEXES) }];
      else h.QueryParam = [{ Name: 'q', Regex: rng.pick(REGEXES) }];
      break;
    }
    case 2: if (rec.intention) rec.intention.Precedence = rng.pick(NUMBERS); else o.CreateIndex = rng.pick(NUMBERS); break;
    case 3: {
      const key = rng.pick(['SourceName', 'DestinationName', 'SourceNS', 'DestinationNS', 'Name', 'Service']);
      o[key] = rng.pick(NAMES);
      break;
    }
    case 4: o[rng.pick(Object.keys(o).concat('Extra'))] = deep(rng); break;
    case 5: o[rng.pick(['Evil', '__proto__', 'constructor', 'QueryParam', 'Kind', 'Nodemesh'])] = rng.pick([1, 'x', {}, [], deep(rng)]); break;
    case 6: o[rng.pick(Object.keys(o).concat('Action'))] = rng.pick(['allow', 'deny', '', 'ALLOW', 'maybe', null, 0, ['allow']]); break;
    case 7: if (rec.intention) rec.intention.Meta = { [rng.pick(NAMES)]: rng.pick(['v', 'x'.repeat(600), '']) }; else o.Meta = { k: rng.pick(['v', 1]) }; break;
    case 8: {
      const ids = [ID1, ID2, ID3, 'not-a-uuid', 'service-defaults/api', 'service-router/web', `${ID1}/x`, ''];
      if (rng.int(2)) rec.id = rng.pick(ids);
      else if (rec.intention) rec.intention.ID = rng.pick(ids);
      else if (rec.entry) rec.entry.Name = rng.pick(NAMES);
      break;
    }
    default: rec.deleted = !rec.deleted;
  }
}

/** A record with a valid envelope and a mutated, hostile value (the generator the runner calls). */
export function generateRecord(rng: Rng): string {
  const rec = structuredClone(rng.pick(SEEDS));
  const field = rec.intention ? 'intention' : rec.entry ? 'entry' : undefined;
  if (field && rng.int(3) === 0) {
    try {
      rec[field] = JSON.parse(mutateJson(rng, [rec[field]]));
    } catch {
      // a broken text: keep the seed's value and tweak it instead
    }
  }
  for (let k = 1 + rng.int(3); k > 0; k--) tweak(rng, rec);
  return JSON.stringify(rec);
}

let stores: { intentions: IntentionStore; entries: ConfigEntryStore; wall: number; sets: ReturnType<typeof signedPolicySet>[] } | undefined;
function open(): NonNullable<typeof stores> {
  if (stores) return stores;
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-fuzz-records-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const intentions = new IntentionStore(join(dir, 'intentions.json'), 'fuzz-self');
  const entries = new ConfigEntryStore(join(dir, 'config-entries.json'), 'fuzz-self');
  const verifier = new AuthorityVerifier(trust);
  verifier.learn(signer.chain);
  const events = { unknownSigner: () => { throw new Error('the fuzz signer is known'); }, refused: () => undefined };
  stores = { intentions, entries, wall: HLC.wall, sets: [signedPolicySet('intentions', intentions, verifier, events), signedPolicySet('config-entries', entries, verifier, events)] };
  return stores;
}

const FACTS: RequestFacts[] = [
  { method: 'GET', path: '/p/x', query: new URLSearchParams('q=1'), headers: { x: 'abc' } },
  { method: 'POST', path: '/admin/a', query: new URLSearchParams(), headers: {} },
  // Short runs of one letter: the hostile list has backtracking-heavy patterns, which stay cheap on these.
  { method: 'GET', path: `/${'a'.repeat(16)}`, query: new URLSearchParams(`q=${'a'.repeat(16)}`), headers: { x: 'a'.repeat(16) } },
];
/** What the API would take as the body of this intention (its read-only fields it ignores). */
const apiBody = (i: Intention) => ({
  Description: i.Description, SourceNS: i.SourceNS, SourceName: i.SourceName, DestinationNS: i.DestinationNS, DestinationName: i.DestinationName,
  SourceType: i.SourceType, ...(i.Action ? { Action: i.Action } : {}), ...(i.Permissions ? { Permissions: i.Permissions } : {}),
  DefaultAddr: i.DefaultAddr, DefaultPort: i.DefaultPort, Meta: i.Meta,
});
const SELF_CONTAINED = (k: Kind, n: string): ConfigEntry | undefined => (k === 'service-defaults' ? { Kind: k, Name: n, Protocol: 'http', CreateIndex: 0, ModifyIndex: 0 } : undefined);

/**
 * Merges one record into both stores (each refuses what is not its own). Property: nothing throws; every admitted
 * intention passes validateIntention and the API's decoder, has the precedence and hash computed here, and decides
 * every request without an error; every admitted entry passes decodeConfigEntry and its routes compile and match.
 */
export function mergeRecord(text: string): void {
  let rec: Json;
  try {
    rec = JSON.parse(text) as Json;
  } catch {
    return;
  }
  const s = open();
  // Each case must be newer than what the stores hold to be looked at at all (saved cases replay the same way).
  if (typeof rec === 'object' && rec !== null && typeof rec.hlc === 'object' && rec.hlc !== null && Number.isSafeInteger(rec.hlc.wall)) rec.hlc.wall = ++s.wall;
  // Signed by the policy key (a writer that validates nothing); one case in eight with its signature broken, which
  // nothing may take.
  const blob = signer.signBlob(JSON.stringify(rec));
  const tampered = text.length % 8 === 0;
  if (tampered) blob.sig = `${blob.sig.slice(0, 10)}${blob.sig[10] === 'A' ? 'B' : 'A'}${blob.sig.slice(11)}`;
  const tookIntention = s.sets[0].merge([blob]) > 0;
  const tookEntry = s.sets[1].merge([blob]) > 0;
  assert.ok(!tampered || (!tookIntention && !tookEntry), 'a record with a broken signature was taken');
  assert.ok(!(tookIntention && tookEntry), 'one record admitted by both stores');
  if (tookIntention && !rec.deleted) {
    const i = s.intentions.get(rec.id);
    assert.deepEqual(validateIntention(withDefaults(i)), [], 'an admitted intention fails validateIntention');
    assert.equal(i.Precedence, precedence(i), 'an admitted intention keeps a precedence not computed here');
    const { Hash: _h, CreatedAt: _c, UpdatedAt: _u, CreateIndex: _ci, ModifyIndex: _mi, ...fields } = i;
    assert.equal(i.Hash, intentionHash(fields), 'an admitted intention keeps a hash not computed here');
    const body = withDefaults(parseIntentionBody(JSON.stringify(apiBody(i)), () => 'http'));
    assert.deepEqual(validateIntention(body), [], 'the API would refuse an admitted intention');
    for (const r of FACTS) assert.equal(decideRequest(i, r, 'deny').error, undefined, 'an admitted intention cannot be evaluated');
  }
  if (tookEntry && !rec.deleted) {
    const e = s.entries.allRecords().find((r) => r.id === rec.id)!.entry!;
    decodeConfigEntry(e, SELF_CONTAINED);
    const routes = compileChain(e.Name, (k, n) => s.entries.get(k, n));
    callPolicy(e.Name, (k, n) => s.entries.get(k, n));
    for (const route of routes) for (const r of FACTS) route.match(r);
  }
  // Decisions over everything admitted so far.
  const list = s.intentions.list();
  for (const [src, dst] of [['web', 'api'], ['web', 'db'], ['x', 'api']]) {
    const d = decide(list, src, dst, 'deny');
    if (d.l7 && d.intention) for (const r of FACTS) decideRequest(d.intention, r, 'deny');
  }
}

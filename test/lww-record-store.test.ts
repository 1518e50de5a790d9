// Last-writer-wins record sets (catalog/lww-record-store.ts): merge by hybrid clock with node tie-break, tombstones, refusal and quarantine of malformed records, idempotent and commutative merges, durable local writes.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { LwwRecordStore, admitEnvelope, isLwwEnvelope, type LwwRecord, type RecordSeal } from '../catalog/lww-record-store.js';
import { compareHlc, type Hlc } from '../catalog/hlc.js';
import { ConfigEntryStore } from '../policy/config-entry-store.js';
import { NodemeshError } from '../lib/errors.js';

// ---------------------------------------------------------------- a minimal concrete set

interface Note { text: string; ModifyIndex: number }
type NoteRecord = LwwRecord<'note', Note>;

/** The smallest real subclass: a note per id, checked as an API would (text must be a string). */
class NoteStore extends LwwRecordStore<'note', Note> {
  constructor(path: string, node: string) {
    super(path, node, 'note', 'test notes');
  }
  write(id: string, text: string): Promise<void> { return this.put(id, { text, ModifyIndex: 0 }); }
  erase(id: string): Promise<void> { return this.remove(id); }
  get(id: string): Note | undefined { return this.value(id); }
  live(): Note[] { return this.values(); }
  protected override admitRecord(r: unknown): NoteRecord | string {
    const env = admitEnvelope(r);
    if (typeof env === 'string') return env;
    if (env.deleted) return env as NoteRecord;
    const note = (r as { note?: unknown }).note as { text?: unknown } | null | undefined;
    if (typeof note !== 'object' || note === null || typeof note.text !== 'string') return 'a live note record carries no text';
    if (note.text === 'explode') throw new Error('checker blew up');
    return { ...env, note: { text: note.text, ModifyIndex: 0 } };
  }
}

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'nodemesh-lww-'));
  dirs.push(d);
  return d;
}

async function store(node = 'me', path = join(tempDir(), 'notes.json')): Promise<NoteStore> {
  const s = new NoteStore(path, node);
  await s.load();
  return s;
}

/** Wall times well inside the accepted window (a peer may not be more than a minute ahead). */
const BASE = Date.now() - 100_000;
const hlc = (dt: number, logical = 0, node = 'peer'): Hlc => ({ wall: BASE + dt, logical, node });
/** A peer's record as it travels: a live note, or a tombstone when `text` is null. */
function rec(id: string, at: Hlc, text: string | null): Record<string, unknown> {
  return text === null ? { id, hlc: at, deleted: true } : { id, hlc: at, deleted: false, note: { text, ModifyIndex: 99 } };
}

/** What a store holds, without local indexes: id → clock, tombstone, text. */
function state(s: NoteStore): Record<string, { hlc: Hlc; deleted: boolean; text?: string }> {
  const out: Record<string, { hlc: Hlc; deleted: boolean; text?: string }> = {};
  for (const r of s.allRecords().sort((a, b) => a.id.localeCompare(b.id))) {
    out[r.id] = { hlc: { ...r.hlc }, deleted: r.deleted, ...(r.note ? { text: r.note.text } : {}) };
  }
  return out;
}

// ---------------------------------------------------------------- merge rules

test('a peer\'s record for a new id is taken, and merge reports the change', async () => {
  const s = await store();
  assert.equal(s.merge(rec('a', hlc(1), 'first')), true);
  assert.equal(s.get('a')?.text, 'first');
  assert.deepEqual(s.hlcOf('a'), hlc(1));
  assert.equal(s.record('a')?.deleted, false);
  assert.equal(s.allRecords().length, 1);
  await s.close();
});

test('a newer write replaces the one held; an older or identical one changes nothing', async () => {
  const s = await store();
  s.merge(rec('a', hlc(10), 'ten'));
  assert.equal(s.merge(rec('a', hlc(20), 'twenty')), true);
  assert.equal(s.get('a')?.text, 'twenty');
  assert.equal(s.merge(rec('a', hlc(15), 'fifteen')), false, 'older');
  assert.equal(s.merge(rec('a', hlc(20), 'twenty')), false, 'the same again');
  assert.equal(s.merge(rec('a', hlc(20), 'same clock, other text')), false, 'not newer: not even looked at');
  assert.equal(s.get('a')?.text, 'twenty');
  assert.deepEqual(s.quarantined(), [], 'ignored for their clocks, not refused');
  await s.close();
});

test('ties on wall time go to the higher logical counter, then to the greater node name', async () => {
  const s = await store();
  s.merge(rec('a', hlc(5, 1, 'node-m'), 'm1'));
  assert.equal(s.merge(rec('a', hlc(5, 0, 'node-z'), 'z0')), false, 'a lower counter loses whatever the node');
  assert.equal(s.merge(rec('a', hlc(5, 2, 'node-a'), 'a2')), true, 'a higher counter wins whatever the node');
  assert.equal(s.merge(rec('a', hlc(5, 2, 'node-0'), 'zero')), false, 'same wall and counter: the smaller node name loses');
  assert.equal(s.merge(rec('a', hlc(5, 2, 'node-b'), 'b2')), true, 'and the greater one wins');
  assert.equal(s.get('a')?.text, 'b2');
  assert.deepEqual(s.quarantined(), [], 'every record was looked at by its clock only, none refused');
  await s.close();
});

test('two agents writing at the same instant converge on the same winner, in either order', async () => {
  const x = rec('k', hlc(7, 3, 'agent-1'), 'from 1');
  const y = rec('k', hlc(7, 3, 'agent-2'), 'from 2');
  const [s1, s2] = [await store('r1'), await store('r2')];
  s1.merge(structuredClone(x)); s1.merge(structuredClone(y));
  s2.merge(structuredClone(y)); s2.merge(structuredClone(x));
  assert.equal(s1.get('k')?.text, 'from 2');
  assert.deepEqual(state(s1), state(s2));
  await s1.close(); await s2.close();
});

test('a tombstone hides the value but is kept, so an older write cannot bring it back; a newer one can', async () => {
  const s = await store();
  s.merge(rec('a', hlc(1), 'alive'));
  assert.equal(s.merge(rec('a', hlc(2), null)), true);
  assert.equal(s.get('a'), undefined);
  assert.deepEqual(s.live(), []);
  assert.equal(s.record('a')?.deleted, true, 'the tombstone is stored');
  assert.deepEqual(s.hlcOf('a'), hlc(2));
  assert.equal(s.merge(rec('a', hlc(1, 5), 'zombie')), false, 'a write from before the delete stays deleted');
  assert.equal(s.get('a'), undefined);
  assert.equal(s.merge(rec('a', hlc(3), 'reborn')), true, 'a write after the delete wins');
  assert.equal(s.get('a')?.text, 'reborn');
  assert.deepEqual(s.quarantined(), []);
  await s.close();
});

test('a tombstone older than the write held changes nothing; one for an unknown id is stored', async () => {
  const s = await store();
  s.merge(rec('a', hlc(10), 'kept'));
  assert.equal(s.merge(rec('a', hlc(9), null)), false);
  assert.equal(s.get('a')?.text, 'kept');
  assert.equal(s.merge(rec('b', hlc(1), null)), true, 'a delete can arrive before the write it deletes');
  assert.equal(s.merge(rec('b', hlc(0), 'late write')), false);
  assert.equal(s.get('b'), undefined);
  assert.deepEqual(s.quarantined(), []);
  await s.close();
});

test('a tombstone carries no value even if the peer sent one', async () => {
  const s = await store();
  s.merge({ id: 'a', hlc: hlc(1), deleted: true, note: { text: 'ghost', ModifyIndex: 1 } });
  assert.equal(s.record('a')?.note, undefined);
  assert.equal(s.get('a'), undefined);
  await s.close();
});

/** A deterministic shuffle. */
function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Writes and deletes of five ids by three agents, clocks colliding on purpose. */
function history(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let n = 0;
  for (const id of ['a', 'b', 'c', 'd', 'e']) {
    for (const node of ['n1', 'n2', 'n3']) {
      for (const [dt, logical] of [[1, 0], [1, 1], [2, 0], [3, 0]]) {
        n++;
        out.push(rec(id, hlc(dt, logical, node), n % 4 === 0 ? null : `${id}@${node}/${dt}.${logical}`));
      }
    }
  }
  return out;
}

test('merge is commutative: every order of the same records ends in the same state', async () => {
  const all = history();
  const results: ReturnType<typeof state>[] = [];
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const s = await store(`receiver-${seed}`);
    for (const r of shuffled(all, seed)) s.merge(structuredClone(r));
    assert.deepEqual(s.quarantined(), []);
    results.push(state(s));
    await s.close();
  }
  for (const r of results.slice(1)) assert.deepEqual(r, results[0]);
  // The state is the latest record per id, by clock.
  for (const id of ['a', 'b', 'c', 'd', 'e']) {
    const latest = all.filter((r) => r.id === id).sort((p, q) => compareHlc(p.hlc as Hlc, q.hlc as Hlc)).at(-1)!;
    assert.deepEqual(results[0][id].hlc, latest.hlc);
    assert.equal(results[0][id].deleted, latest.deleted);
  }
});

test('apply A then B equals apply B then A, for any two records', async () => {
  const all = history();
  const pairs: [Record<string, unknown>, Record<string, unknown>][] = [];
  for (let i = 0; i < all.length; i += 7) for (let j = 3; j < all.length; j += 11) pairs.push([all[i], all[j]]);
  for (const [a, b] of pairs) {
    const s1 = new NoteStore(join(tempDir(), 'x.json'), 'x');
    const s2 = new NoteStore(join(tempDir(), 'y.json'), 'y');
    s1.merge(structuredClone(a)); s1.merge(structuredClone(b));
    s2.merge(structuredClone(b)); s2.merge(structuredClone(a));
    assert.deepEqual(state(s1), state(s2), `${JSON.stringify(a.hlc)} / ${JSON.stringify(b.hlc)}`);
    await s1.close(); await s2.close();
  }
});

test('merge is idempotent: the same records a second time change nothing', async () => {
  const s = await store();
  const all = history();
  const firstPass = all.map((r) => s.merge(structuredClone(r)));
  assert.ok(firstPass.some(Boolean), 'the first pass changed things');
  const before = state(s);
  const index = s.index;
  const secondPass = shuffled(all, 9).map((r) => s.merge(structuredClone(r)));
  assert.deepEqual(secondPass.filter(Boolean), [], 'nothing changed the second time');
  assert.deepEqual(state(s), before);
  assert.equal(s.index, index, 'no index was spent');
  assert.deepEqual(s.quarantined(), []);
  await s.close();
});

test('the change feed wakes and the index rises on every applied change, not on ignored ones', async () => {
  const s = await store();
  let woke = 0;
  s.feed.subscribe(() => { woke++; });
  const i0 = s.index;
  s.merge(rec('a', hlc(2), 'x'));
  s.merge(rec('a', hlc(1), 'older'));
  s.merge({ id: 'bad' });
  assert.equal(woke, 1);
  assert.equal(s.index, i0 + 1);
  assert.equal(s.get('a')?.ModifyIndex, i0 + 1, 'a merged value gets our index, not the peer\'s');
  await s.close();
});

// ---------------------------------------------------------------- refused records

test('records without a proper envelope are refused and quarantined, never applied', async () => {
  const s = await store();
  const bad: unknown[] = [
    null, 'text', 42, [], {}, { id: 'a' }, { id: 7, deleted: false, hlc: hlc(1) }, { id: 'a', deleted: 'no', hlc: hlc(1) },
    { id: 'a', deleted: false }, { id: 'a', deleted: false, hlc: { wall: '1', logical: 0, node: 'n' } },
    { id: 'a', deleted: false, hlc: { wall: 1, logical: 0 } }, { id: 'a', deleted: false, hlc: { wall: 1, logical: 0, node: 5 } },
  ];
  for (const r of bad) assert.equal(s.merge(r), false, JSON.stringify(r));
  assert.deepEqual(s.allRecords(), []);
  // Quarantined by id and reason: an unreadable id shows as "?", and repeats are counted, not listed.
  assert.deepEqual(s.quarantined().map((x) => [x.id, x.reason, x.phase, x.count]), [
    ['?', 'malformed record: id, deleted and hlc are required', 'merge', 6],
    ['a', 'malformed record: id, deleted and hlc are required', 'merge', 6],
  ]);
  const t = await store();
  t.merge(null);
  assert.equal(t.quarantined()[0].from, '?', 'an unreadable writer shows as "?" too');
  await s.close();
  await t.close();
});

test('envelopes with impossible clocks or ids are refused with the reason', async () => {
  const s = await store();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ id: 'a', deleted: false, hlc: { wall: -1, logical: 0, node: 'n' }, note: { text: 't' } }, /hlc wall and logical must be non-negative integers/],
    [{ id: 'b', deleted: false, hlc: { wall: BASE + 0.5, logical: 0, node: 'n' }, note: { text: 't' } }, /non-negative integers/],
    [{ id: 'c', deleted: false, hlc: { wall: BASE, logical: 1.5, node: 'n' }, note: { text: 't' } }, /non-negative integers/],
    [{ id: 'd', deleted: false, hlc: { wall: BASE, logical: -2, node: 'n' }, note: { text: 't' } }, /non-negative integers/],
    [{ id: 'e', deleted: false, hlc: { wall: BASE, logical: 0, node: '' }, note: { text: 't' } }, /hlc node must be 1 to 256 characters/],
    [{ id: 'f', deleted: false, hlc: { wall: BASE, logical: 0, node: 'n'.repeat(257) }, note: { text: 't' } }, /hlc node must be 1 to 256 characters/],
    [{ id: '', deleted: false, hlc: hlc(1), note: { text: 't' } }, /id must be 1 to 512 characters/],
    [{ id: 'x'.repeat(513), deleted: true, hlc: hlc(1) }, /id must be 1 to 512 characters/],
  ];
  for (const [r, reason] of cases) {
    assert.equal(s.merge(r), false);
    const q = s.quarantined().at(-1)!;
    assert.match(q.reason, reason, JSON.stringify(r).slice(0, 80));
    assert.equal(q.id, String(r.id).slice(0, 128), 'ids are cut to 128 characters in the quarantine');
  }
  assert.deepEqual(s.allRecords(), []);
  await s.close();
});

test('the subclass\'s own check refuses a bad value; a check that throws refuses instead of crashing', async () => {
  const s = await store();
  assert.equal(s.merge({ id: 'a', hlc: hlc(1), deleted: false }), false);
  assert.equal(s.merge({ id: 'b', hlc: hlc(1), deleted: false, note: { text: 5 } }), false);
  assert.equal(s.merge(rec('c', hlc(1), 'explode')), false);
  assert.deepEqual(s.quarantined().map((q) => [q.id, q.reason]), [
    ['a', 'a live note record carries no text'],
    ['b', 'a live note record carries no text'],
    ['c', 'record cannot be checked: checker blew up'],
  ]);
  assert.deepEqual(s.allRecords(), []);
  await s.close();
});

test('a value larger than an API write (1 MiB) is refused', async () => {
  const s = await store();
  assert.equal(s.merge(rec('big', hlc(1), 'x'.repeat(1 << 20))), false);
  assert.match(s.quarantined()[0].reason, /over the 1048576-byte limit of an API write/);
  assert.equal(s.merge(rec('fits', hlc(1), 'x'.repeat((1 << 20) - 100))), true);
  await s.close();
});

test('a refused record is told to the handler once per id and reason; repeats are only counted', async () => {
  const s = await store();
  const told: string[][] = [];
  s.onRefused = (set, id, reason, from, phase) => { told.push([set, id, reason, from, phase]); };
  const bad = { id: 'a', hlc: hlc(1, 0, 'evil'), deleted: false };
  for (let i = 0; i < 3; i++) s.merge(structuredClone(bad));
  assert.deepEqual(told, [['test-notes', 'a', 'a live note record carries no text', 'evil', 'merge']]);
  assert.equal(s.quarantined()[0].count, 3);
  s.merge({ ...bad, hlc: hlc(1, 0, '') });
  assert.equal(told.length, 2, 'another reason for the same id is told too');
  assert.equal(s.setName, 'test-notes');
  await s.close();
});

test('a refusal handler that throws does not stop the merge of good records', async () => {
  const s = await store();
  s.onRefused = () => { throw new Error('logger down'); };
  assert.equal(s.merge({ id: 'a', hlc: hlc(1), deleted: false }), false);
  assert.equal(s.merge(rec('b', hlc(1), 'fine')), true);
  assert.equal(s.get('b')?.text, 'fine');
  await s.close();
});

test('the quarantine keeps the newest 256 refusals', async () => {
  const s = await store();
  for (let i = 0; i < 300; i++) s.merge({ id: `bad-${i}`, hlc: hlc(1), deleted: false });
  const q = s.quarantined();
  assert.equal(q.length, 256);
  assert.equal(q[0].id, 'bad-44');
  assert.equal(q.at(-1)!.id, 'bad-299');
  await s.close();
});

test('a record stamped more than a minute ahead of our clock is ignored; one slightly ahead is taken and moves our clock', async () => {
  const s = await store();
  assert.equal(s.merge(rec('far', { wall: Date.now() + 120_000, logical: 0, node: 'fast' }, 'from the future')), false);
  assert.equal(s.get('far'), undefined);
  assert.deepEqual(s.quarantined(), [], 'not quarantined: a skewed clock is not a malformed record');
  const ahead: Hlc = { wall: Date.now() + 30_000, logical: 4, node: 'zzz-fast' };
  assert.equal(s.merge(rec('near', ahead, 'slightly ahead')), true);
  await s.write('near', 'local, after');
  assert.ok(compareHlc(s.hlcOf('near')!, ahead) > 0, 'our next write outranks what we saw');
  assert.equal(s.get('near')?.text, 'local, after');
  await s.close();
});

// ---------------------------------------------------------------- local writes

test('local writes are stamped by our clock and node, handed to gossip once, latest per id', async () => {
  const s = await store('me');
  await s.write('a', 'one');
  await s.write('a', 'two');
  await s.write('b', 'bee');
  const out = s.takeLocalWrites();
  assert.deepEqual(out.map((r) => [r.id, r.note?.text]).sort(), [['a', 'two'], ['b', 'bee']]);
  assert.ok(out.every((r) => r.hlc.node === 'me'), 'stamped with our node');
  assert.deepEqual(s.takeLocalWrites(), [], 'each write is handed on once');
  await s.erase('a');
  const del = s.takeLocalWrites();
  assert.deepEqual(del.map((r) => [r.id, r.deleted]), [['a', true]]);
  assert.equal(s.get('a'), undefined);
  assert.equal(s.takeLocalWrites().length, 0);
  await s.close();
});

test('merged records are not handed back to gossip as local writes', async () => {
  const s = await store();
  s.merge(rec('a', hlc(1), 'remote'));
  assert.deepEqual(s.takeLocalWrites(), []);
  await s.close();
});

test('a local write after a peer\'s record for the same id outranks it; the peer\'s older write then loses', async () => {
  const s = await store('me');
  const peer = hlc(50, 9, 'zzzz');
  s.merge(rec('a', peer, 'peer'));
  await s.write('a', 'mine');
  assert.ok(compareHlc(s.hlcOf('a')!, peer) > 0, 'our write is later');
  assert.equal(s.merge(rec('a', peer, 'peer')), false);
  assert.equal(s.get('a')?.text, 'mine');
  await s.close();
});

test('local records replicate: a peer merging them holds the same state', async () => {
  const w = await store('writer');
  await w.write('a', 'x');
  await w.write('b', 'y');
  await w.erase('b');
  const r = await store('reader');
  for (const x of JSON.parse(JSON.stringify(w.allRecords())) as unknown[]) assert.equal(r.merge(x), true);
  assert.deepEqual(state(r), state(w));
  await w.close(); await r.close();
});

test('local writes are sealed when a sealer is set: the seal covers the record as written', async () => {
  const s = await store('me');
  const seal = (body: string): RecordSeal => ({ body, by: 'fp-1', sig: createHash('sha256').update(body).digest('hex') });
  s.sealer = seal;
  await s.write('a', 'signed');
  const r = s.record('a')!;
  assert.ok(r.sig, 'sealed');
  const { sig, ...plain } = r;
  const signed = JSON.parse(sig.body) as Record<string, unknown>;
  assert.equal(signed.id, 'a');
  assert.deepEqual(signed.hlc, plain.hlc);
  assert.equal((signed.note as Note).text, 'signed');
  assert.equal(sig.by, 'fp-1');
  await s.close();
});

test('sealUnsigned seals records written before a sealer was set, once; without a sealer it does nothing', async () => {
  const s = await store('me');
  await s.write('a', 'old');
  s.merge(rec('b', hlc(1), 'peer, unsigned'));
  assert.equal(await s.sealUnsigned(), 0, 'no sealer');
  s.sealer = (body) => ({ body, by: 'fp', sig: 'sig:' + body.length });
  assert.equal(await s.sealUnsigned(), 2);
  assert.ok(s.allRecords().every((r) => r.sig?.by === 'fp'), 'every record sealed');
  const body = JSON.parse(s.record('a')!.sig!.body) as Record<string, unknown>;
  assert.equal('sig' in body, false, 'the sealed body is the record without a seal');
  assert.equal(await s.sealUnsigned(), 0, 'nothing left to seal');
  await s.close();
});

test('a peer\'s seal is kept exactly as sent (checking it is the set\'s business)', async () => {
  const s = await store();
  const sig = { body: '{"any":"thing"}', by: 'peer-fp', sig: 'abc' };
  s.merge({ ...rec('a', hlc(1), 'sealed'), sig });
  assert.deepEqual(s.record('a')?.sig, sig);
  await s.close();
});

// ---------------------------------------------------------------- durability

test('records survive a restart, tombstones too, and the clock carries on past them', async () => {
  const path = join(tempDir(), 'notes.json');
  const s1 = await store('me', path);
  await s1.write('a', 'alpha');
  s1.merge(rec('b', { wall: Date.now() + 20_000, logical: 3, node: 'peer' }, 'beta'));
  await s1.write('c', 'gamma');
  await s1.erase('c');
  const index = s1.index;
  await s1.close();
  const s2 = await store('me', path);
  assert.deepEqual(state(s2), state(s1));
  assert.equal(s2.record('c')?.deleted, true);
  assert.ok(s2.index >= index, 'indexes never go backwards across restarts');
  await s2.write('b', 'after restart');
  assert.equal(s2.get('b')?.text, 'after restart', 'a write after the restart outranks the loaded peer record');
  await s2.close();
});

test('load drops invalid records from the file, reports them (phase "load"), keeps the rest and rewrites the file', async () => {
  const path = join(tempDir(), 'notes.json');
  const good = rec('good', hlc(1), 'fine');
  writeFileSync(path, JSON.stringify({ format: 1, index: 41, records: [good, { id: 'bad', hlc: hlc(2), deleted: false }, 'junk'] }));
  const s = await store('me', path);
  assert.equal(s.get('good')?.text, 'fine');
  assert.equal(s.get('bad'), undefined);
  assert.ok(s.index >= 41, 'the saved index is kept');
  assert.deepEqual(s.quarantined().map((q) => [q.id, q.phase]), [['bad', 'load'], ['?', 'load']]);
  const told: string[] = [];
  s.onRefused = (_set, id, _reason, _from, phase) => told.push(`${id}:${phase}`);
  assert.deepEqual(told, ['bad:load', '?:load'], 'a handler set after load hears of them at once');
  const onDisk = JSON.parse(readFileSync(path, 'utf8')) as { records: { id: string }[] };
  assert.deepEqual(onDisk.records.map((r) => r.id), ['good'], 'the file no longer holds them');
  await s.close();
});

test('a state file of an unknown format is refused at load', async () => {
  const path = join(tempDir(), 'notes.json');
  writeFileSync(path, JSON.stringify({ format: 2, index: 1, records: [] }));
  const s = new NoteStore(path, 'me');
  await assert.rejects(s.load(), (e: unknown) => e instanceof NodemeshError && e.code === 'STATE_FORMAT');
});

test('a write whose save fails is rolled back and reported as STATE_WRITE_FAILED', async () => {
  const dir = join(tempDir(), 'gone');
  mkdirSync(dir);
  const s = await store('me', join(dir, 'notes.json'));
  await s.write('a', 'saved');
  rmSync(dir, { recursive: true }); // the disk goes away under the store
  await assert.rejects(s.write('a', 'not saved'), (e: unknown) => e instanceof NodemeshError && e.code === 'STATE_WRITE_FAILED' && e.status === 500);
  assert.equal(s.get('a')?.text, 'saved', 'the previous value is back');
  await assert.rejects(s.write('new', 'never'), /could not save test notes/);
  assert.equal(s.get('new'), undefined);
  assert.equal(s.record('new'), undefined);
});

test('a write whose save failed (and was rolled back) is never handed to gossip', async () => {
  const s = await store('me', join(tempDir(), 'missing-dir', 'notes.json'));
  await assert.rejects(s.write('a', 'failed write'));
  assert.equal(s.get('a'), undefined);
  assert.deepEqual(s.takeLocalWrites().map((r) => r.id), []);
});

// ---------------------------------------------------------------- the envelope helpers

test('admitEnvelope rebuilds the envelope from known fields only, keeping a seal as is', () => {
  const sig = { body: 'b', by: 'y', sig: 's' };
  assert.deepEqual(admitEnvelope({ id: 'a', hlc: { wall: 5, logical: 1, node: 'n', extra: 1 }, deleted: true, sig, injected: 'x', note: {} }), {
    id: 'a', hlc: { wall: 5, logical: 1, node: 'n' }, deleted: true, sig,
  });
  assert.deepEqual(admitEnvelope({ id: 'a', hlc: { wall: 0, logical: 0, node: 'n' }, deleted: false }), { id: 'a', hlc: { wall: 0, logical: 0, node: 'n' }, deleted: false });
  assert.match(String(admitEnvelope(undefined)), /malformed record/);
  assert.match(String(admitEnvelope({ id: 'a', deleted: false, hlc: { wall: Number.MAX_SAFE_INTEGER + 2, logical: 0, node: 'n' } })), /non-negative integers/);
});

test('isLwwEnvelope checks the shape every set shares', () => {
  assert.equal(isLwwEnvelope({ id: 'a', deleted: false, hlc: { wall: 1, logical: 0, node: 'n' } }), true);
  for (const x of [undefined, null, 0, 'a', [], {}, { id: 'a', deleted: false }, { id: 'a', deleted: 0, hlc: { wall: 1, logical: 0, node: 'n' } }, { id: 'a', deleted: false, hlc: null }]) {
    assert.equal(isLwwEnvelope(x), false, JSON.stringify(x));
  }
});

// ---------------------------------------------------------------- a real set: config entries

test('with real config-entry records, merges commute and a later delete wins on every replica', async () => {
  const w1 = new ConfigEntryStore(join(tempDir(), 'a.json'), 'agent-a');
  const w2 = new ConfigEntryStore(join(tempDir(), 'b.json'), 'agent-b');
  await w1.load(); await w2.load();
  await w1.write({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' });
  await w2.write({ Kind: 'service-defaults', Name: 'api', Protocol: 'grpc' });
  await w2.write({ Kind: 'service-defaults', Name: 'web', Protocol: 'tcp' });
  const recs = [...w1.takeLocalWrites(), ...w2.takeLocalWrites()].map((r) => JSON.parse(JSON.stringify(r)) as unknown);
  await w1.delete('service-defaults', 'api');
  const tomb = JSON.parse(JSON.stringify(w1.takeLocalWrites()[0])) as unknown;
  const replicas: ConfigEntryStore[] = [];
  for (const order of [[...recs, tomb], [tomb, ...recs].reverse(), [recs[2], tomb, recs[1], recs[0]]]) {
    const r = new ConfigEntryStore(join(tempDir(), 'r.json'), `replica-${replicas.length}`);
    await r.load();
    for (const x of order) r.merge(structuredClone(x));
    replicas.push(r);
  }
  for (const r of replicas) {
    assert.equal(r.get('service-defaults', 'api'), undefined, 'the delete is the latest write');
    assert.equal(r.get('service-defaults', 'web')?.Protocol, 'tcp');
    assert.deepEqual(r.quarantined(), []);
  }
  const view = (r: ConfigEntryStore) => r.allRecords().map((x) => ({ id: x.id, hlc: x.hlc, deleted: x.deleted, Protocol: x.entry?.Protocol })).sort((a, b) => a.id.localeCompare(b.id));
  assert.deepEqual(view(replicas[1]), view(replicas[0]));
  assert.deepEqual(view(replicas[2]), view(replicas[0]));
  for (const s of [w1, w2, ...replicas]) await s.close();
});

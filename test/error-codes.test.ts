// The error-code registry holds: every code is registered and described, no source throws a bare Error, none decides on message text.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, isErrorCode } from '../lib/error-codes.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The layers, from the one line of docs/ARCHITECTURE.md that states them. */
function layers(): string[] {
  const line = readFileSync(join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8').split('\n').find((l) => l.startsWith('**Layers, bottom to top:**'));
  assert.ok(line, 'docs/ARCHITECTURE.md states the layer order');
  return [...line.matchAll(/`([a-z][a-z-]*)`/g)].map((m) => m[1]);
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

/** Every source file of the agent's layers, with its text. */
const sources = (): { file: string; text: string }[] =>
  layers().flatMap((l) => tsFiles(join(ROOT, l))).map((p) => ({ file: relative(ROOT, p), text: readFileSync(p, 'utf8') }));

test('every registered code is UPPER_SNAKE_CASE with a one-line description', () => {
  const codes = Object.entries(ERROR_CODES);
  assert.ok(codes.length >= 60, `the registry holds the project's codes (${codes.length})`);
  for (const [code, description] of codes) {
    assert.match(code, /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/, `${code}: UPPER_SNAKE_CASE`);
    assert.equal(typeof description, 'string', `${code}: described`);
    assert.ok(description.trim().length > 10, `${code}: a description that says something`);
    assert.ok(!description.includes('\n'), `${code}: one line`);
  }
  assert.ok(isErrorCode('INTERNAL'));
  assert.ok(!isErrorCode('NOT_A_REGISTERED_CODE'));
  assert.ok(!isErrorCode('toString'), 'inherited properties are no codes');
});

test("every NodemeshError('CODE' in the source layers names a registered code", () => {
  const files = sources();
  assert.ok(files.length > 50, 'the layers were found');
  const unknown: string[] = [];
  let seen = 0;
  for (const { file, text } of files) {
    for (const m of text.matchAll(/NodemeshError\(\s*'([^']*)'/g)) {
      seen++;
      if (!isErrorCode(m[1])) unknown.push(`${file}: ${m[1]}`);
    }
  }
  assert.ok(seen > 50, `the scan found the literals (${seen})`);
  assert.deepEqual(unknown, [], 'codes missing from lib/error-codes.ts');
});

test('no source file throws a bare Error', () => {
  const bare = sources().filter(({ text }) => text.includes('throw new Error(')).map(({ file }) => file);
  assert.deepEqual(bare, [], 'throw a NodemeshError with a registered code instead');
});

test('no source file decides on an error message\'s text', () => {
  const byText = sources().filter(({ text }) => /\.message\s*\)?\s*\.(startsWith|includes)\(/.test(text)).map(({ file }) => file);
  assert.deepEqual(byText, [], 'decide on the error code instead');
});

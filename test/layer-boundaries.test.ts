// The layering holds: every import points down the order docs/ARCHITECTURE.md writes once, no import cycles, every
// source folder is a layer, every file says what it owns; and the check itself catches an upward import and a cycle.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importEdges, layeringProblems } from './helpers/import-graph.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Folders beside the layers: not part of the agent's code. */
const BESIDE = new Set(['test', 'bench', 'scripts', 'daemonset', 'docs', 'bin', 'dist', 'node_modules', 'ui']);

/** The order, from the one line of docs/ARCHITECTURE.md that states it. */
function layerOrder(): string[] {
  const line = readFileSync(join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8').split('\n').find((l) => l.startsWith('**Layers, bottom to top:**'));
  assert.ok(line, 'docs/ARCHITECTURE.md states the layer order on a "**Layers, bottom to top:**" line');
  return [...line.matchAll(/`([a-z][a-z-]*)`/g)].map((m) => m[1]);
}

const hasTs = (dir: string): boolean => readdirSync(dir).some((n) => {
  const p = join(dir, n);
  return statSync(p).isDirectory() ? hasTs(p) : n.endsWith('.ts');
});

test('every import points down the layer order, and no files or folders import each other in a cycle', () => {
  const layers = layerOrder();
  assert.ok(layers.length >= 10, `the order names the layers: ${layers.join(' → ')}`);
  const problems = layeringProblems(ROOT, layers);
  assert.deepEqual(problems, [], `layering problems:\n${problems.join('\n')}`);
});

test('every top-level folder with source is a layer with a README; every source file is kebab-case and opens with what it owns', () => {
  const layers = layerOrder();
  const withSource = readdirSync(ROOT).filter((n) => !n.startsWith('.') && !BESIDE.has(n) && statSync(join(ROOT, n)).isDirectory() && hasTs(join(ROOT, n)));
  assert.deepEqual(withSource.sort(), [...layers].sort(), 'the folders holding source are exactly the layers');
  const { files } = importEdges(ROOT, layers);
  for (const layer of layers) assert.ok(readFileSync(join(ROOT, layer, 'README.md'), 'utf8').length > 40, `${layer}/README.md says what the layer holds`);
  for (const f of files) {
    assert.match(f.split('/').pop()!, /^[a-z0-9]+(-[a-z0-9]+)*\.ts$/, `${f}: kebab-case`);
    assert.match(readFileSync(join(ROOT, f), 'utf8'), /^\/\/ \S.{10,}/, `${f}: opens with a one-line comment saying what it owns`);
  }
});

test('the web UI (ui/) is a client of the HTTP API: it imports no layer, and each of its files says what it owns', () => {
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
  const files = walk(join(ROOT, 'ui', 'src')).filter((f) => /\.tsx?$/.test(f));
  assert.ok(files.length >= 5, 'the UI has its sources');
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const rel = f.slice(ROOT.length + 1);
    assert.match(f.split('/').pop()!, /^[a-z0-9]+(-[a-z0-9]+)*\.tsx?$/, `${rel}: kebab-case`);
    assert.match(text, /^\/\/ \S.{10,}/, `${rel}: opens with a one-line comment saying what it owns`);
    for (const m of text.matchAll(/from\s+['"]([^'"]+)['"]/g)) {
      assert.ok(m[1] === 'preact' || m[1].startsWith('preact/') || !m[1].includes('../../'), `${rel} imports ${m[1]}: the UI reaches the agent through its API only`);
    }
  }
});

test('the container image is built from every layer and the UI (the Dockerfile copies each)', () => {
  const docker = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  for (const folder of [...layerOrder(), 'ui']) assert.match(docker, new RegExp(`^COPY ${folder} \\./${folder}$`, 'm'), `the Dockerfile copies ${folder}/`);
});

test('scripts that load the compiled dist/ (benchmarks in plain node) name modules that exist in the layers', () => {
  const layers = new Set(layerOrder());
  for (const dir of ['bench', 'bin']) {
    for (const name of readdirSync(join(ROOT, dir)).filter((n) => /\.m?js$/.test(n))) {
      for (const m of readFileSync(join(ROOT, dir, name), 'utf8').matchAll(/['"]\.\.\/dist\/([^'"]+)\.js['"]/g)) {
        assert.ok(layers.has(m[1].split('/')[0]), `${dir}/${name} loads dist/${m[1]}.js, which is in no layer`);
        assert.ok(statSync(join(ROOT, `${m[1]}.ts`), { throwIfNoEntry: false })?.isFile(), `${dir}/${name} loads dist/${m[1]}.js, but ${m[1]}.ts does not exist`);
      }
    }
  }
});

test('the check fails on an upward import, an import into no layer, a missing file, a file cycle and a folder cycle', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-layers-'));
  try {
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    write('low/base.ts', "// base\nexport const a = 1;\n");
    write('high/user.ts', "// fine: high imports low\nimport { a } from '../low/base.js';\nexport const b = a;\n");
    assert.deepEqual(layeringProblems(dir, ['low', 'high']), [], 'a downward import is fine');
    write('low/climb.ts', "// climbs\nimport type { b } from '../high/user.js';\nexport type C = typeof b;\n");
    write('low/stray.ts', "// strays\nexport * from '../elsewhere/x.js';\n");
    write('low/gone.ts', "// dangles\nimport './missing.js';\n");
    write('high/ping.ts', "// ping\nimport { pong } from './pong.js';\nexport const ping = () => pong;\n");
    write('high/pong.ts', "// pong\nexport const pong = async () => (await import('./ping.js')).ping;\n");
    const problems = layeringProblems(dir, ['low', 'high']);
    assert.ok(problems.includes('upward import: low/climb.ts (low) imports high/user.ts (high)'), problems.join('\n'));
    assert.ok(problems.includes('low/stray.ts imports elsewhere/x.ts, which is in no layer'), problems.join('\n'));
    assert.ok(problems.includes('low/gone.ts imports low/missing.ts, which does not exist'), problems.join('\n'));
    assert.ok(problems.includes('import cycle: high/ping.ts → high/pong.ts → high/ping.ts'), problems.join('\n'));
    write('high/sub/part.ts', "// a part that reaches back up\nimport { b } from '../user.js';\nexport const c = b;\n");
    write('high/whole.ts', "// the whole, made of its parts\nimport { c } from './sub/part.js';\nexport const d = c;\n");
    const more = layeringProblems(dir, ['low', 'high']);
    assert.ok(more.includes('folder cycle: high → high/sub → high'), more.join('\n'));
    assert.equal(more.length, 5, more.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Reads a source tree's relative imports and reports what breaks the layering: upward imports, cycles, files outside a layer.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';

export interface ImportEdge { from: string; to: string; typeOnly: boolean }

const SPECIFIER = /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Every .ts file under `dir` (relative to `root`, with `/`). */
function tsFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(join(root, rel)).isDirectory()) out.push(...tsFiles(root, rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** The relative imports of every .ts file in the given top-level folders; `.js` specifiers name the `.ts` source. */
export function importEdges(root: string, folders: readonly string[]): { files: string[]; edges: ImportEdge[] } {
  const files = folders.flatMap((f) => tsFiles(root, f));
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(SPECIFIER)) {
      const spec = m[3] ?? m[4];
      const target = normalize(join(dirname(file), spec)).split(sep).join('/').replace(/\.js$/, '.ts');
      edges.push({ from: file, to: target, typeOnly: m[2] !== undefined });
    }
  }
  return { files, edges };
}

/**
 * What breaks the layering of `layers` (bottom first): an import of a higher layer, of a file in no layer, or of a file
 * that does not exist; and import cycles between files, and between folders (type-only imports included: a cycle of
 * types still ties the files together). Each problem is one readable line.
 */
export function layeringProblems(root: string, layers: readonly string[]): string[] {
  const rank = new Map(layers.map((l, i) => [l, i]));
  const { files, edges } = importEdges(root, layers);
  const known = new Set(files);
  const problems: string[] = [];
  const layerOf = (f: string) => f.split('/')[0];
  for (const e of edges) {
    const to = rank.get(layerOf(e.to));
    if (to === undefined) problems.push(`${e.from} imports ${e.to}, which is in no layer`);
    else if (!known.has(e.to)) problems.push(`${e.from} imports ${e.to}, which does not exist`);
    else if (to > rank.get(layerOf(e.from))!) problems.push(`upward import: ${e.from} (${layerOf(e.from)}) imports ${e.to} (${layerOf(e.to)})`);
  }
  problems.push(...cycles(files, edges).map((c) => `import cycle: ${c.join(' → ')}`));
  // Folders within a layer too (across layers an upward import says it): a folder that imports a subfolder which
  // imports it back has no place in the picture of the layer.
  const folderOf = (f: string) => f.slice(0, f.lastIndexOf('/'));
  const folderEdges = edges.filter((e) => folderOf(e.from) !== folderOf(e.to) && layerOf(e.from) === layerOf(e.to))
    .map((e) => ({ ...e, from: folderOf(e.from), to: folderOf(e.to) }));
  problems.push(...cycles([...new Set(files.map(folderOf))], folderEdges).map((c) => `folder cycle: ${c.join(' → ')}`));
  return problems;
}

/** The import cycles among files (each reported once, from its smallest file name). */
export function cycles(files: string[], edges: ImportEdge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) next.get(e.from)?.push(e.to);
  const found = new Map<string, string[]>();
  // Tarjan's strongly connected components; a component of more than one file (or a self-import) is a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!next.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (next.get(v) ?? []).includes(v)) {
        comp.sort();
        found.set(comp[0], [...comp, comp[0]]);
      }
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  return [...found.values()];
}

// Bundles the web UI (ui/) into dist/ui: one script, one stylesheet and the page, minified, nothing fetched at run time.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'ui');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(root, 'ui', 'src', 'main.tsx') },
  bundle: true, minify: true, format: 'esm', target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic', jsxImportSource: 'preact', outdir: out, logLevel: 'warning', legalComments: 'none',
});
copyFileSync(join(root, 'ui', 'src', 'app.css'), join(out, 'app.css'));
copyFileSync(join(root, 'ui', 'index.html'), join(out, 'index.html'));

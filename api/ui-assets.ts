// The web UI's files (built into dist/ui by `npm run build`) at /ui/, `/` sending the browser there; a strict Content
// Security Policy, so the page runs only its own script and talks only to this agent.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Router } from './http-router.js';
import { sendError } from './http-router.js';

const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

/** dist/ui next to dist/api when running the build; the built copy when running the sources (tests under tsx). */
function uiDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  // app.js marks a built copy (the sources' ui/ folder has an index.html too).
  return [join(here, '..', 'ui'), join(here, '..', 'dist', 'ui')].find((d) => existsSync(join(d, 'app.js')));
}

export function uiRoutes(r: Router): void {
  const dir = uiDir();
  const files = new Map<string, { body: Buffer; type: string }>();
  const file = (name: string) => {
    if (!dir || !/^[a-z0-9-]+\.(html|js|css|svg)$/.test(name)) return undefined;
    let f = files.get(name);
    if (!f) {
      const path = join(dir, name);
      if (!existsSync(path)) return undefined;
      f = { body: readFileSync(path), type: TYPES[name.split('.').pop()!] };
      files.set(name, f);
    }
    return f;
  };
  const serve: Parameters<Router['on']>[2] = (ctx) => {
    const name = ctx.params.file || 'index.html';
    const f = file(name);
    if (!f) {
      return sendError(ctx.res, 404, 'API_NOT_FOUND', dir ? `no UI file ${name}` : 'the UI is not built: run `npm run build`');
    }
    ctx.res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': f.body.length, 'Cache-Control': name === 'index.html' ? 'no-cache' : 'max-age=300', ...SECURITY_HEADERS });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : f.body);
  };
  r.on('GET', '/ui/:file', serve);
  r.on('GET', '/ui/', serve);
  const home: Parameters<Router['on']>[2] = (ctx) => {
    ctx.res.writeHead(302, { Location: '/ui/' }).end();
  };
  r.on('GET', '/ui', home);
  r.on('GET', '/', home);
}

// The web UI in a real browser (Debian's Chromium, headless, driven by playwright-core) against two real agents with
// real traffic: every page renders; the topology shows web → api once requests flow and turns it red after a deny
// made in the UI (with the token typed into the page), which the mesh enforces; a page of another site cannot write
// through the agent. Screenshots land in $NODEMESH_UI_SCREENSHOTS (docs/img when refreshing the docs).
// Agents ui-a 127.0.30.1 (web), ui-b 127.0.30.2 (api); apps 127.0.30.11 (api), 127.0.30.21 (web); a foreign page 127.0.30.9.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { put, sharedCa, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'ui-test-token-5d1c';
const SHOTS = process.env.NODEMESH_UI_SCREENSHOTS ?? tempDir('nodemesh-ui-');
const skip = !existsSync(CHROMIUM) && process.env.CI !== 'true' ? 'Debian chromium is not installed (scripts/install-interop.sh installs it)' : false;

let a: TestAgent;
let b: TestAgent;
let app: Server;
let foreign: Server;
let upstream = 0;
let browser: Browser;
let page: Page;
const load = { stop: false, sent: 0, statuses: new Map<number, number>() };

function call(): Promise<number> {
  return new Promise((resolve) => {
    const r = request({ host: '127.0.0.1', port: upstream, path: '/items', localAddress: '127.0.30.21', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    r.on('error', () => resolve(0));
    r.end();
  });
}

/** Steady traffic web → api while the test runs: at most 3000 requests, 10 per second, stopped by `after` at the latest. */
async function traffic(): Promise<void> {
  while (!load.stop && load.sent < 3000) {
    load.sent++;
    const s = await call();
    load.statuses.set(s, (load.statuses.get(s) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `ui-${name}.png`), fullPage: true });

before(async () => {
  if (skip) return;
  mkdirSync(SHOTS, { recursive: true });
  const ca = await sharedCa();
  b = await startTestAgent({ node: 'ui-b', bind: '127.0.30.2', ...ca });
  a = await startTestAgent({ node: 'ui-a', bind: '127.0.30.1', aclToken: TOKEN, join: [`127.0.30.2:${b.gossip.port}`], ...ca });
  app = createServer((req, res) => { req.resume(); res.end('ok'); });
  await new Promise<void>((r) => app.listen(0, '127.0.30.11', r));
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.30.11', Port: (app.address() as { port: number }).port, Tags: ['v1'], Connect: { SidecarService: {} } }));
  const auth = { 'X-Consul-Token': TOKEN };
  assert.equal((await a.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }, auth))).status, 200);
  upstream = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.30.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }, auth));
  // Traffic starts once a knows api's instance and protocol, so the window holds no early failures to colour the edge.
  await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/api?passing')).json()) as unknown[]).length, 1, 'a knows api'), 20_000);
  await waitFor(async () => assert.equal((await a.api('/v1/config/service-defaults/api')).status, 200, 'a has the protocol'), 10_000);
  assert.equal(await call(), 200, 'web reaches api');
  void traffic();
  // A page of another site, which tries to create an intention through the agent.
  foreign = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end(`<!doctype html><script>
    fetch(${JSON.stringify(`${b.url}/v1/connect/intentions`)}, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
      body: JSON.stringify({ SourceName: 'evil', DestinationName: 'api', Action: 'allow' }) }).finally(() => { document.title = 'sent'; });
  </script>`));
  await new Promise<void>((r) => foreign.listen(0, '127.0.30.9', r));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
});

after(async () => {
  load.stop = true;
  await browser?.close().catch(() => undefined);
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  app?.close();
  foreign?.close();
});

test('/ goes to the UI; the topology shows web → api, green, with its rate and p99, and updates live', { skip }, async () => {
  await page.goto(`${a.url}/`);
  assert.match(page.url(), /\/ui\/$/);
  const edge = page.locator('[data-edge="web→api"]');
  await edge.waitFor({ timeout: 20_000 });
  await page.waitForFunction(() => document.querySelector('[data-edge="web→api"]')?.getAttribute('data-health') === 'ok', undefined, { timeout: 20_000 });
  assert.match(await edge.locator('text.label').first().textContent() ?? '', /\/s · p99 /);
  const first = await page.locator('[data-testid="updated"]').textContent();
  await page.waitForFunction((t) => document.querySelector('[data-testid="updated"]')?.textContent !== t, first, { timeout: 10_000 });
  await shot('topology');
});

test('services, nodes and config pages render what the agents hold', { skip }, async () => {
  await page.goto(`${a.url}/ui/#/services`);
  const services = page.locator('[data-testid="services"]');
  await services.locator('text=api').first().waitFor();
  await page.waitForFunction(() => /1\/1 passing/.test(document.querySelector('[data-testid="services"]')?.textContent ?? ''), undefined, { timeout: 10_000 });
  await services.locator('tr', { hasText: 'api-sidecar-proxy' }).click();
  await page.locator('[data-testid="instances"]').waitFor();
  await shot('services');
  await page.goto(`${a.url}/ui/#/nodes`);
  await page.waitForFunction(() => (document.querySelector('[data-testid="nodes"]')?.textContent ?? '').includes('ui-b'));
  assert.equal(await page.locator('[data-testid="nodes"] .badge.passing').count(), 2, 'both agents alive');
  await shot('nodes');
  await page.goto(`${a.url}/ui/#/config`);
  await page.locator('[data-testid="config-service-defaults"]').waitFor();
  await shot('config');
});

test('a deny made in the UI with the token typed in: listed, checked, enforced, and the edge turns red', { skip }, async () => {
  await page.goto(`${a.url}/ui/#/intentions`);
  // Without the token the write is refused, and the page says why.
  const form = page.locator('[data-testid="create-intention"]');
  await form.locator('input[name=source]').fill('web');
  await form.locator('input[name=destination]').fill('api');
  await form.locator('button[type=submit]').click();
  await page.locator('[data-testid="intention-error"]', { hasText: '403' }).waitFor();
  await page.locator('input[name=token]').fill(TOKEN);
  await page.locator('form.token button[type=submit]').click();
  await page.waitForLoadState('load');
  await form.locator('input[name=source]').fill('web');
  await form.locator('input[name=destination]').fill('api');
  await form.locator('select[name=action]').selectOption('deny');
  await form.locator('input[name=description]').fill('made in the UI');
  await form.locator('button[type=submit]').click();
  await page.locator('[data-testid="intentions"] tr', { hasText: 'made in the UI' }).waitFor();
  const check = page.locator('[data-testid="check-intention"]');
  await check.locator('input[name=check-source]').fill('web');
  await check.locator('input[name=check-destination]').fill('api');
  await check.locator('button[type=submit]').click();
  await page.locator('[data-testid="check-answer"]', { hasText: 'denied' }).waitFor();
  await shot('intentions');
  // The mesh enforces it: web's requests stop reaching api.
  await waitFor(async () => assert.notEqual(await call(), 200, 'web → api is refused'), 15_000);
  // The topology marks the edge red and its panel names the intention.
  await page.goto(`${a.url}/ui/#/topology`);
  await page.waitForFunction(() => document.querySelector('[data-edge="web→api"]')?.getAttribute('data-health') === 'bad', undefined, { timeout: 30_000 });
  await page.locator('[data-edge="web→api"] text.label').first().click();
  await page.locator('[data-testid="edge-panel"]', { hasText: 'deny' }).waitFor();
  await page.locator('[data-testid="edge-denials"]', { hasText: /intention × \d+/ }).waitFor();
  await shot('topology-denied');
  // No secret in the page: the token lives in the tab's session storage, never in the document.
  assert.ok(!(await page.content()).includes(TOKEN));
});

test('a page of another site cannot write through an agent that takes writes without a token (its POST is refused as cross-site)', { skip }, async () => {
  // b is a loopback dev agent with no token: without the guard, the page's no-cors POST would create an intention.
  assert.equal((await b.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'probe', DestinationName: 'api', Action: 'allow' }) })).status, 200, 'b takes token-less writes');
  const before = (await (await b.api('/v1/connect/intentions')).json()) as unknown[];
  const evil = await browser.newPage();
  await evil.goto(`http://127.0.30.9:${(foreign.address() as { port: number }).port}/`);
  await evil.waitForFunction(() => document.title === 'sent', undefined, { timeout: 10_000 });
  await evil.close();
  const now = (await (await b.api('/v1/connect/intentions')).json()) as { SourceName: string }[];
  assert.equal(now.length, before.length);
  assert.ok(!now.some((i) => i.SourceName === 'evil'));
  // The same write from the agent's own origin (as the UI makes it) is fine; the refusal is about the site.
  const r = await fetch(`${a.url}/v1/connect/intentions`, { method: 'POST', headers: { Origin: 'http://attacker.example', 'X-Consul-Token': TOKEN }, body: JSON.stringify({ SourceName: 'x', DestinationName: 'y', Action: 'allow' }) });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('x-nodemesh-error'), 'CSRF_REFUSED');
  // DNS rebinding: a browser asking for the agent under another site's name (resolved to loopback) is refused, reads too.
  const rebound = await new Promise<{ status: number; code?: string }>((resolve, reject) => {
    const port = Number(new URL(b.url).port);
    const q = request({ host: '127.0.0.1', port, path: '/v1/agent/self', headers: { Host: `evil.example:${port}`, 'Sec-Fetch-Site': 'same-origin', 'Sec-Fetch-Mode': 'cors' } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, code: res.headers['x-nodemesh-error'] as string | undefined });
    });
    q.on('error', reject);
    q.end();
  });
  assert.deepEqual(rebound, { status: 403, code: 'CSRF_REFUSED' });
  assert.equal((await b.api('/v1/agent/self')).status, 200, 'the CLI and API clients (no browser headers) are not concerned');
  assert.ok(load.sent > 0);
});

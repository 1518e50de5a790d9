// Reloading service definition files: SIGHUP and `nodemesh reload` register, change and remove config services, never API ones.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { put, runCli, spawnAgent, tempDir } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

const def = (name: string, port: number, extra: Record<string, unknown> = {}) => JSON.stringify({ service: { name, port, ...extra } });

test('SIGHUP and `nodemesh reload` apply the config dir: new files register, changed ones update, removed ones deregister; API services stay', async () => {
  const dir = tempDir();
  const configDir = join(dir, 'conf.d');
  mkdirSync(configDir);
  writeFileSync(join(configDir, 'billing.json'), def('billing', 8080, { tags: ['v1'] }));
  writeFileSync(join(configDir, 'ledger.json'), def('ledger', 8081, { connect: { sidecar_service: {} } }));
  const a = await spawnAgent(['--node', 'vm-reload', '--bind', '127.0.18.21', '--data-dir', join(dir, 'data'), '--config-dir', configDir]);
  try {
    const ids = async () => Object.keys(await (await fetch(`${a.url}/v1/agent/services`)).json() as object).sort();
    assert.deepEqual(await ids(), ['billing', 'ledger', 'ledger-sidecar-proxy']);
    await fetch(`${a.url}/v1/agent/service/register`, put({ Name: 'by-api', Port: 9000 }));

    // SIGHUP: one file removed, one changed, one added.
    rmSync(join(configDir, 'ledger.json'));
    writeFileSync(join(configDir, 'billing.json'), def('billing', 8080, { tags: ['v2'] }));
    writeFileSync(join(configDir, 'reports.json'), def('reports', 8082));
    a.proc.kill('SIGHUP');
    await waitFor(async () => assert.deepEqual(await ids(), ['billing', 'by-api', 'reports']));
    const billing = (await (await fetch(`${a.url}/v1/agent/service/billing`)).json()) as { Tags: string[] };
    assert.deepEqual(billing.Tags, ['v2']);

    // `nodemesh reload` does the same through the API.
    rmSync(join(configDir, 'reports.json'));
    const r = await runCli(['--http-addr', a.url, 'reload']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Configuration reload triggered/);
    assert.deepEqual(await ids(), ['billing', 'by-api']);

    // A broken file: the reload is refused with the reason, and nothing changes.
    writeFileSync(join(configDir, 'broken.json'), '{"service": {"name": "x", "port": "eighty"}}');
    const bad = await runCli(['--http-addr', a.url, 'reload']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /reload refused, the running config is kept/);
    writeFileSync(join(configDir, 'broken.json'), def('no-port-zero', -1));
    const bad2 = await runCli(['--http-addr', a.url, 'reload']);
    assert.notEqual(bad2.code, 0);
    assert.match(bad2.stderr, /Invalid service port -1/);
    a.proc.kill('SIGHUP');
    await waitFor(() => assert.match(a.output(), /reload refused: the new config is invalid; keeping the running one/));
    assert.deepEqual(await ids(), ['billing', 'by-api']);
    assert.equal(((await (await fetch(`${a.url}/v1/agent/self`)).json()) as { Config: { NodeName: string } }).Config.NodeName, 'vm-reload', 'still running');
  } finally {
    a.proc.kill('SIGTERM');
    await a.exited;
  }
});

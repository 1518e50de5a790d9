// `nodemesh verify`: a running agent's security posture as a table (or JSON); exit 1 when a check fails.

import type { Command } from 'commander';
import { NodemeshError } from '../lib/errors.js';
import type { Finding } from '../config/posture.js';
import { apiCall, type ClientOptions } from './api-client.js';
import type { Format } from './table.js';
import { output } from './table.js';

export function verifyCommand(program: Command, g: () => ClientOptions & { format: Format }): void {
  program.command('verify')
    .description('check a running agent\'s posture: gossip encryption, API token, default policy, key file modes, certificate expiry')
    .action(async () => {
      const r = await apiCall(g(), 'GET', '/v1/agent/posture') as { Findings: Finding[]; Failed: number; Warnings: number };
      output(g().format, r, ['CHECK', 'STATUS', 'DETAIL'], r.Findings.map((f) => [f.Check, f.Status.toUpperCase(), f.Detail]), 'no findings');
      if (g().format !== 'json') process.stdout.write(`\n${r.Failed} failed, ${r.Warnings} warning(s), ${r.Findings.length - r.Failed - r.Warnings} ok\n`);
      if (r.Failed > 0) throw new NodemeshError('VERIFY_FAILED', `${r.Failed} check(s) failed: see the table above for what to change`, 1);
    });
}

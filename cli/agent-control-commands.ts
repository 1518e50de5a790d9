// `nodemesh reload|leave`: tell a running agent to re-read its config files, or to drain and leave the pool.

import type { Command } from 'commander';
import { apiCall, type ClientOptions } from './api-client.js';
import type { Format } from './table.js';

export function agentControlCommands(program: Command, g: () => ClientOptions & { format: Format }): void {
  program.command('reload').description('re-read the agent\'s config files: services there are registered, changed or removed; CA files reloaded').action(async () => {
    await apiCall(g(), 'PUT', '/v1/agent/reload');
    if (g().format === 'json') process.stdout.write(`${JSON.stringify({ reloaded: true })}\n`);
    else process.stdout.write('Configuration reload triggered\n');
  });

  program.command('leave').description('gracefully leave the pool and stop the agent: new connections refused, open ones drained').action(async () => {
    await apiCall(g(), 'PUT', '/v1/agent/leave');
    if (g().format === 'json') process.stdout.write(`${JSON.stringify({ leaving: true })}\n`);
    else process.stdout.write('Graceful leave started: the agent drains open connections, leaves the pool and exits\n');
  });
}

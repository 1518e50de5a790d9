// `nodemesh monitor`: follow a running agent's log (GET /v1/agent/monitor), as `consul monitor` does.

import { Option, type Command } from 'commander';
import { apiStream, type ClientOptions } from './api-client.js';
import type { Format } from './table.js';

export function monitorCommand(program: Command, g: () => ClientOptions & { format: Format }): void {
  program.command('monitor')
    .description('stream the agent\'s log as it is written, until Ctrl-C')
    .addOption(new Option('--log-level <level>', 'the lowest level shown').choices(['trace', 'debug', 'info', 'warn', 'error']).default('info'))
    .addHelpText('after', '\nExamples:\n  nodemesh monitor\n  nodemesh monitor --log-level debug --format json | jq .\n')
    .action(async (o: { logLevel: string }) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      const json = g().format === 'json';
      const body = await apiStream(g(), `/v1/agent/monitor?loglevel=${o.logLevel}${json ? '&logjson' : ''}`, stop.signal);
      try {
        for await (const chunk of body) process.stdout.write(chunk);
      } catch (e) {
        if (!stop.signal.aborted) throw e;
      }
      if (!stop.signal.aborted) process.stderr.write('the agent ended the monitor: it has stopped or is restarting\n');
    });
}

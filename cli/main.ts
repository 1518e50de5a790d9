// The `nodemesh` command: global options, subcommands, and the one-line-error / exit-code contract.

import { randomBytes } from 'node:crypto';
import { Command, CommanderError, Option } from 'commander';
import { isNodemeshError, NodemeshError } from '../lib/errors.js';
import { VERSION } from '../lib/version.js';
import { agentCommand } from './agent-command.js';
import { agentControlCommands } from './agent-control-commands.js';
import { catalogCommands } from './catalog-commands.js';
import { connectCommands } from './connect-commands.js';
import { intentionCommands } from './intention-commands.js';
import { configCommands } from './config-commands.js';
import { keyringCommands } from './keyring-commands.js';
import { verifyCommand } from './verify-command.js';
import { monitorCommand } from './monitor-command.js';
import { topCommand } from './top-command.js';
import type { Format } from './table.js';
import { parseGoDuration } from '../lib/go-duration.js';

const program = new Command('nodemesh')
  .description('nodemesh: a service-mesh node agent with a Consul-compatible API')
  .addOption(new Option('--http-addr <addr>', 'agent HTTP API address').env('NODEMESH_HTTP_ADDR').default('http://127.0.0.1:8500'))
  .addOption(new Option('--token <token>', 'ACL token for API writes').env('NODEMESH_HTTP_TOKEN'))
  .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
  .addOption(new Option('--timeout <duration>', 'give up on an API call after this long, e.g. 30s').default('10s'))
  .enablePositionalOptions(false)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const globals = () => {
  const o = program.opts<{ httpAddr: string; token?: string; format: Format; timeout: string }>();
  let timeoutMs: number;
  try {
    timeoutMs = parseGoDuration(o.timeout);
  } catch {
    timeoutMs = NaN;
  }
  if (!(timeoutMs > 0)) throw new NodemeshError('CLI_USAGE', `invalid --timeout ${JSON.stringify(o.timeout)}: a duration such as 10s or 2m`, 2);
  return { httpAddr: o.httpAddr, token: o.token, format: o.format, timeoutMs };
};

agentCommand(program);
catalogCommands(program, globals);
intentionCommands(program, globals);
configCommands(program, globals);
keyringCommands(program, globals);
connectCommands(program, globals);
agentControlCommands(program, globals);
verifyCommand(program, globals);
monitorCommand(program, globals);
topCommand(program, globals);
program.command('keygen').description('print a new gossip encryption key (base64, 32 bytes) for --encrypt').action(() => {
  process.stdout.write(`${randomBytes(32).toString('base64')}\n`);
});
program.command('version').description('print the nodemesh version').action(() => {
  if (globals().format === 'json') process.stdout.write(`${JSON.stringify({ version: VERSION })}\n`);
  else process.stdout.write(`nodemesh v${VERSION}\n`);
});

// Subcommands share the parent's exit behaviour and accept the global options after the verb too.
for (const c of program.commands) {
  c.exitOverride();
  for (const sub of c.commands) sub.exitOverride();
}

/** Every long option the command tree knows (`--deny`, `--http-addr`, …). */
function longOptions(c: Command, into = new Set<string>()): Set<string> {
  for (const o of c.options) if (o.long) into.add(o.long);
  for (const sub of c.commands) longOptions(sub, into);
  return into;
}

/** Consul's CLI takes long flags with one dash (`-deny`, `-http-addr=…`): so does this one, for the flags it knows. */
export function consulStyleFlags(argv: string[], known: Set<string>): string[] {
  const end = argv.indexOf('--');
  return argv.map((a, i) => {
    if ((end >= 0 && i > end) || !/^-[a-z][a-z0-9-]+(=.*)?$/i.test(a)) return a;
    const long = `-${a.split('=')[0]}`;
    return known.has(long) ? `-${a}` : a;
  });
}

try {
  await program.parseAsync(consulStyleFlags(process.argv, longOptions(program)));
} catch (e) {
  if (e instanceof CommanderError) {
    process.exit(e.exitCode === 0 ? 0 : 2);
  }
  if (isNodemeshError(e)) {
    process.stderr.write(`nodemesh: ${e.message}\n`);
    process.exit(e.status === 2 ? 2 : 1);
  }
  process.stderr.write(`nodemesh: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
}

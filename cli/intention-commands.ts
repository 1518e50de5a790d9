// `nodemesh intention …`: Consul's intention verbs (create, delete, get, list, check, match) over the HTTP API.

import type { Command } from 'commander';
import { NodemeshError } from '../lib/errors.js';
import { foldName, sameName } from '../model/service-names.js';
import type { Intention } from '../model/intention.js';
import type { ClientOptions } from './api-client.js';
import { apiCall } from './api-client.js';
import type { Format } from './table.js';
import { output } from './table.js';

type Globals = () => ClientOptions & { format: Format };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const short = (ns: string, name: string) => (ns === 'default' ? name : `${ns}/${name}`);
const line = (i: Intention) => `${short(i.SourceNS, i.SourceName)} => ${short(i.DestinationNS, i.DestinationName)} (${i.Action})`;
const collect = (v: string, prev: string[]) => [...prev, v];
/** Names compare case-insensitively, as the agent's duplicate check does. */
const samePair = (i: Intention, src: string, dst: string) => sameName(i.SourceName, foldName(src)) && sameName(i.DestinationName, foldName(dst));

/** Finds an intention by ID, or by its exact source and destination. */
async function find(g: ClientOptions, a: string, b?: string): Promise<Intention> {
  if (b === undefined) {
    if (!UUID.test(a)) throw new NodemeshError('CLI_USAGE', 'give an intention ID, or SRC and DST', 2);
    return await apiCall(g, 'GET', `/v1/connect/intentions/${a}`) as Intention;
  }
  const all = await apiCall(g, 'GET', '/v1/connect/intentions') as Intention[];
  const hit = all.find((i) => samePair(i, a, b));
  if (!hit) throw new NodemeshError('INTENTION_NOT_FOUND', `Error: Intention with source "${a}" and destination "${b}" not found.`, 1);
  return hit;
}

export function intentionCommands(program: Command, g: Globals): void {
  const intention = program.command('intention').description('allow or deny traffic between services');

  intention.command('create <src> <dst>')
    .description('create an intention (allow unless --deny)')
    .option('--allow', 'allow traffic (the default)')
    .option('--deny', 'deny traffic')
    .option('--replace', 'replace an existing intention with the same source and destination')
    .option('--description <text>', 'what the intention is for')
    .option('--meta <key=value>', 'metadata pair (repeatable)', collect, [])
    .action(async (src: string, dst: string, o: { allow?: boolean; deny?: boolean; replace?: boolean; description?: string; meta: string[] }) => {
      if (o.allow && o.deny) throw new NodemeshError('CLI_USAGE', 'give --allow or --deny, not both', 2);
      const meta: Record<string, string> = {};
      for (const p of o.meta) {
        const i = p.indexOf('=');
        if (i <= 0) throw new NodemeshError('CLI_USAGE', `--meta wants key=value, got ${JSON.stringify(p)}`, 2);
        meta[p.slice(0, i)] = p.slice(i + 1);
      }
      const body = { SourceName: src, DestinationName: dst, Action: o.deny ? 'deny' : 'allow', Description: o.description, Meta: meta };
      const desc = `${src} => ${dst} (${body.Action})`;
      let id: string;
      try {
        const existing = o.replace ? (await apiCall(g(), 'GET', '/v1/connect/intentions') as Intention[]).find((i) => samePair(i, src, dst)) : undefined;
        if (existing) {
          await apiCall(g(), 'PUT', `/v1/connect/intentions/${existing.ID}`, body);
          id = existing.ID;
        } else {
          id = (await apiCall(g(), 'POST', '/v1/connect/intentions', body) as { ID: string }).ID;
        }
      } catch (e) {
        throw new NodemeshError('CLI_API_ERROR', `Error creating intention "${desc}": ${(e as Error).message}`, 1);
      }
      if (g().format === 'json') process.stdout.write(`${JSON.stringify({ ID: id })}\n`);
      else process.stdout.write(`Created: ${desc}\n`);
    });

  intention.command('delete <srcOrId> [dst]').description('delete an intention by ID or by SRC DST')
    .action(async (a: string, b?: string) => {
      const i = await find(g(), a, b);
      await apiCall(g(), 'DELETE', `/v1/connect/intentions/${i.ID}`);
      process.stdout.write(g().format === 'json' ? `${JSON.stringify({ deleted: i.ID })}\n` : 'Intention deleted.\n');
    });

  intention.command('get <srcOrId> [dst]').description('show one intention by ID or by SRC DST')
    .action(async (a: string, b?: string) => {
      const i = await find(g(), a, b);
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify(i, null, 2)}\n`);
      const rows: [string, string][] = [['Source:', short(i.SourceNS, i.SourceName)], ['Destination:', short(i.DestinationNS, i.DestinationName)],
        ['Action:', i.Action], ['ID:', i.ID], ['Precedence:', String(i.Precedence)], ['Created At:', i.CreatedAt]];
      if (i.Description) rows.push(['Description:', i.Description]);
      const w = Math.max(...rows.map(([k]) => k.length));
      process.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n');
    });

  intention.command('list').description('list every intention in precedence order').action(async () => {
    const all = await apiCall(g(), 'GET', '/v1/connect/intentions') as Intention[];
    output(g().format, all, ['ID', 'SOURCE', 'ACTION', 'DESTINATION', 'PRECEDENCE'],
      all.map((i) => [i.ID, short(i.SourceNS, i.SourceName), i.Action, short(i.DestinationNS, i.DestinationName), i.Precedence]), 'No intentions.');
  });

  intention.command('check <src> <dst>').description('would SRC be allowed to connect to DST? exit 0 allowed, 1 denied')
    .action(async (src: string, dst: string) => {
      let allowed: boolean;
      try {
        allowed = (await apiCall(g(), 'GET', `/v1/connect/intentions/check?source=${encodeURIComponent(src)}&destination=${encodeURIComponent(dst)}`) as { Allowed: boolean }).Allowed;
      } catch (e) {
        throw new NodemeshError('CLI_API_ERROR', (e as Error).message, 2);
      }
      process.stdout.write(g().format === 'json' ? `${JSON.stringify({ Allowed: allowed })}\n` : `${allowed ? 'Allowed' : 'Denied'}\n`);
      if (!allowed) process.exitCode = 1;
    });

  intention.command('match <name>').description('intentions that apply to a service, in the order they are evaluated')
    .option('--source', 'match NAME as the source')
    .option('--destination', 'match NAME as the destination (the default)')
    .action(async (name: string, o: { source?: boolean; destination?: boolean }) => {
      if (o.source && o.destination) throw new NodemeshError('CLI_USAGE', 'give --source or --destination, not both', 2);
      const by = o.source ? 'source' : 'destination';
      const res = await apiCall(g(), 'GET', `/v1/connect/intentions/match?by=${by}&name=${encodeURIComponent(name)}`) as Record<string, Intention[]>;
      const list = res[name] ?? [];
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      process.stdout.write(list.length ? `${list.map(line).join('\n')}\n` : `No intentions match ${by} ${JSON.stringify(name)}.\n`);
    });
}

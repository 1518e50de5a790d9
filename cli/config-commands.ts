// `nodemesh config write|read|list|delete`: Consul's config-entry verbs over the HTTP API (entries as JSON files).

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { NodemeshError } from '../lib/errors.js';
import type { ConfigEntry } from '../model/config-entry.js';
import type { ClientOptions } from './api-client.js';
import { apiCall } from './api-client.js';
import type { Format } from './table.js';
import { output } from './table.js';

type Globals = () => ClientOptions & { format: Format };

const enc = encodeURIComponent;

/** A summary of what an entry does, for the list table. */
function summary(e: ConfigEntry): string {
  switch (e.Kind) {
    case 'service-defaults': return `protocol ${String(e.Protocol ?? 'tcp')}`;
    case 'proxy-defaults': return `protocol ${String((e.Config as { protocol?: string } | undefined)?.protocol ?? 'tcp')}`;
    case 'service-splitter': return ((e.Splits as { Weight?: number; Service?: string; ServiceSubset?: string }[] | undefined) ?? [])
      .map((s) => `${s.Weight ?? 0}% ${s.Service || e.Name}${s.ServiceSubset ? `/${s.ServiceSubset}` : ''}`).join(', ');
    case 'service-router': return `${((e.Routes as unknown[] | undefined) ?? []).length} route(s)`;
    case 'service-resolver': return [
      Object.keys((e.Subsets as object | undefined) ?? {}).length ? `subsets ${Object.keys(e.Subsets as object).join(',')}` : '',
      (e.LoadBalancer as { Policy?: string } | undefined)?.Policy ? `lb ${(e.LoadBalancer as { Policy: string }).Policy}` : '',
    ].filter(Boolean).join('; ') || 'defaults';
    case 'mesh': {
      const rn = ((e.HTTP as { Incoming?: { RequestNormalization?: Record<string, unknown> } } | undefined)?.Incoming?.RequestNormalization) ?? {};
      return [
        `merge slashes ${rn.MergeSlashes === false ? 'off' : 'on'}`,
        `escaped slashes ${String(rn.PathWithEscapedSlashesAction || 'REJECT_REQUEST')}`,
        `underscores ${String(rn.HeadersWithUnderscoresAction || 'REJECT_REQUEST')}`,
      ].join('; ');
    }
  }
}

export function configCommands(program: Command, g: Globals): void {
  const config = program.command('config').description('traffic configuration: Consul config entries (service-defaults, service-resolver, service-splitter, service-router, proxy-defaults, mesh)');

  config.command('write <file>')
    .description('create or replace the config entry in a JSON file ("-" reads stdin)')
    .option('--cas <index>', 'only if the entry\'s ModifyIndex is still <index> (0: only if it does not exist)')
    .action(async (file: string, o: { cas?: string }) => {
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (e) {
        throw new NodemeshError('CLI_USAGE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 2);
      }
      let entry: { Kind?: string; Name?: string };
      try {
        entry = JSON.parse(text) as typeof entry;
      } catch (e) {
        throw new NodemeshError('CLI_USAGE', `${file} is not JSON (${(e as Error).message}); write the entry as a JSON object with Kind and Name`, 2);
      }
      if (o.cas !== undefined && !/^\d+$/.test(o.cas)) throw new NodemeshError('CLI_USAGE', `--cas wants an index, got ${JSON.stringify(o.cas)}`, 2);
      const ok = await apiCall(g(), 'PUT', `/v1/config${o.cas !== undefined ? `?cas=${o.cas}` : ''}`, entry);
      if (ok === false) throw new NodemeshError('CLI_CAS_FAILED', `Config entry not updated: ${entry.Kind}/${entry.Name} changed since index ${o.cas}`, 1);
      process.stdout.write(`Config entry written: ${entry.Kind}/${entry.Name}\n`);
    });

  config.command('read')
    .description('print one config entry as JSON')
    .requiredOption('--kind <kind>', 'the entry\'s kind')
    .requiredOption('--name <name>', 'the entry\'s name')
    .action(async (o: { kind: string; name: string }) => {
      const e = await apiCall(g(), 'GET', `/v1/config/${enc(o.kind)}/${enc(o.name)}`);
      process.stdout.write(`${JSON.stringify(e, null, 4)}\n`);
    });

  config.command('list')
    .description('list the config entries of one kind')
    .requiredOption('--kind <kind>', 'the kind to list')
    .action(async (o: { kind: string }) => {
      const list = await apiCall(g(), 'GET', `/v1/config/${enc(o.kind)}`) as ConfigEntry[];
      output(g().format, list, ['NAME', 'WHAT', 'MODIFY INDEX'], list.map((e) => [e.Name, summary(e), e.ModifyIndex]), `no ${o.kind} entries`);
    });

  config.command('delete')
    .description('delete one config entry')
    .requiredOption('--kind <kind>', 'the entry\'s kind')
    .requiredOption('--name <name>', 'the entry\'s name')
    .action(async (o: { kind: string; name: string }) => {
      await apiCall(g(), 'DELETE', `/v1/config/${enc(o.kind)}/${enc(o.name)}`);
      process.stdout.write(`Config entry deleted: ${o.kind}/${o.name}\n`);
    });
}

// `nodemesh services|catalog|members|health`: the CLI's Consul-style verbs over the HTTP API.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { NodemeshError } from '../lib/errors.js';
import type { ClientOptions } from './api-client.js';
import { apiCall } from './api-client.js';
import type { Format } from './table.js';
import { output } from './table.js';

type Globals = () => ClientOptions & { format: Format };

const collect = (v: string, prev: string[]) => [...prev, v];

function readDefinition(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new NodemeshError('CLI_FILE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 1);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new NodemeshError('CLI_FILE', `${file} is not valid JSON: ${(e as Error).message}`, 1);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new NodemeshError('CLI_FILE', `${file} must hold one service definition object`, 1);
  const obj = parsed as Record<string, unknown>;
  // Accept Consul's config-file wrapper {"service": {...}} as well as a bare definition.
  return typeof obj.service === 'object' && obj.service !== null && Object.keys(obj).length === 1 ? obj.service as Record<string, unknown> : obj;
}

function parseMeta(pairs: string[]): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new NodemeshError('CLI_USAGE', `--meta wants key=value, got ${JSON.stringify(p)}`, 2);
    meta[p.slice(0, i)] = p.slice(i + 1);
  }
  return meta;
}

interface HealthEntry { Node: { Node: string; Address: string }; Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[] }; Checks: { CheckID: string; Status: string }[] }

const worst = (checks: { Status: string }[]) =>
  checks.find((c) => c.Status === 'critical') ? 'critical' : checks.find((c) => c.Status === 'warning') ? 'warning' : 'passing';

export function catalogCommands(program: Command, g: Globals): void {
  const services = program.command('services').description('register and deregister services on the agent');
  services.command('register [file]')
    .description('register a service from a JSON definition file or from flags')
    .option('--name <name>', 'service name')
    .option('--id <id>', 'service ID (default: the name)')
    .option('--address <addr>', 'service address (default: the node\'s)')
    .option('--port <port>', 'service port')
    .option('--tag <tag>', 'tag (repeatable)', collect, [])
    .option('--meta <key=value>', 'metadata pair (repeatable)', collect, [])
    .action(async (file: string | undefined, o: { name?: string; id?: string; address?: string; port?: string; tag: string[]; meta: string[] }) => {
      const def: Record<string, unknown> = file ? readDefinition(file) : {};
      if (!file && !o.name) throw new NodemeshError('CLI_USAGE', 'give a definition file or --name (see nodemesh services register --help)', 2);
      if (o.name) def.Name = o.name;
      if (o.id) def.ID = o.id;
      if (o.address) def.Address = o.address;
      if (o.port !== undefined) {
        if (!/^\d+$/.test(o.port) || Number(o.port) > 65535) throw new NodemeshError('CLI_USAGE', `--port wants a number between 0 and 65535, got ${JSON.stringify(o.port)}`, 2);
        def.Port = Number(o.port);
      }
      if (o.tag.length) def.Tags = o.tag;
      if (o.meta.length) def.Meta = parseMeta(o.meta);
      await apiCall(g(), 'PUT', '/v1/agent/service/register', def);
      const id = (def.ID ?? def.id ?? def.Name ?? def.name) as string;
      if (g().format === 'json') process.stdout.write(`${JSON.stringify({ registered: id })}\n`);
      else process.stdout.write(`Registered service: ${id}\n`);
    });
  services.command('deregister <idOrFile>')
    .description('deregister a service by ID, or by the definition file it was registered from')
    .action(async (arg: string) => {
      let id = arg;
      if (arg.endsWith('.json')) {
        const def = readDefinition(arg);
        id = String(def.ID ?? def.id ?? def.Name ?? def.name ?? '');
        if (!id) throw new NodemeshError('CLI_USAGE', `${arg} names no service (no ID or Name)`, 2);
      }
      await apiCall(g(), 'PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`);
      if (g().format === 'json') process.stdout.write(`${JSON.stringify({ deregistered: id })}\n`);
      else process.stdout.write(`Deregistered service: ${id}\n`);
    });

  const catalog = program.command('catalog').description('read the catalog');
  catalog.command('services').description('list services and their tags').action(async () => {
    const body = await apiCall(g(), 'GET', '/v1/catalog/services') as Record<string, string[]>;
    output(g().format, body, ['NAME', 'TAGS'], Object.entries(body).map(([n, t]) => [n, t.join(',')]), 'No services registered.');
  });
  catalog.command('nodes').description('list nodes').action(async () => {
    const body = await apiCall(g(), 'GET', '/v1/catalog/nodes') as { Node: string; ID: string; Address: string; Datacenter: string }[];
    output(g().format, body, ['NODE', 'ID', 'ADDRESS', 'DC'], body.map((n) => [n.Node, n.ID.slice(0, 8), n.Address, n.Datacenter]), 'No nodes.');
  });
  catalog.command('service <name>').description('list the instances of a service').action(async (name: string) => {
    const body = await apiCall(g(), 'GET', `/v1/catalog/service/${encodeURIComponent(name)}`) as { Node: string; Address: string; ServiceID: string; ServiceAddress: string; ServicePort: number; ServiceTags: string[] }[];
    output(g().format, body, ['NODE', 'ID', 'ADDRESS', 'PORT', 'TAGS'],
      body.map((s) => [s.Node, s.ServiceID, s.ServiceAddress || s.Address, s.ServicePort, s.ServiceTags.join(',')]),
      `No instances of service ${JSON.stringify(name)}.`);
  });

  program.command('members').description('list the members of the agent pool').action(async () => {
    const body = await apiCall(g(), 'GET', '/v1/agent/members') as { Name: string; Addr: string; Port: number; Status: number; Tags: Record<string, string> }[];
    const status = ['none', 'alive', 'leaving', 'left', 'failed'];
    output(g().format, body, ['NODE', 'ADDRESS', 'STATUS', 'TAGS'],
      body.map((m) => [m.Name, `${m.Addr}:${m.Port}`, status[m.Status] ?? String(m.Status), Object.entries(m.Tags).sort().map(([k, v]) => `${k}=${v}`).join(',')]), 'No members.');
  });

  const health = program.command('health').description('read health');
  health.command('service <name>').description('instances of a service with their check status')
    .option('--passing', 'only instances whose every check passes')
    .action(async (name: string, o: { passing?: boolean }) => {
      const body = await apiCall(g(), 'GET', `/v1/health/service/${encodeURIComponent(name)}${o.passing ? '?passing' : ''}`) as HealthEntry[];
      output(g().format, body, ['NODE', 'ID', 'ADDRESS', 'PORT', 'STATUS', 'CHECKS'],
        body.map((e) => [e.Node.Node, e.Service.ID, e.Service.Address || e.Node.Address, e.Service.Port, worst(e.Checks),
          e.Checks.map((c) => `${c.CheckID}=${c.Status}`).join(' ')]),
        `No instances of service ${JSON.stringify(name)}.`);
    });
}

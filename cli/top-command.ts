// `nodemesh top`: the pool's edges with their golden metrics (requests/s, success, p50/p99, connections, bytes,
// denials) in a table that refreshes, as `linkerd viz top/stat`; `--once` or `--format json` print one snapshot.

import type { Command } from 'commander';
import { NodemeshError } from '../lib/errors.js';
import { parseGoDuration } from '../lib/go-duration.js';
import type { GraphEdge } from '../dataplane/metrics/edge-graph.js';
import { apiCall, type ClientOptions } from './api-client.js';
import { table, type Format } from './table.js';

interface Topology { Edges: GraphEdge[]; Unreachable: { Node: string; Error: string }[] }

const num = (n: number | null, digits = 1, unit = '') => (n === null ? '-' : `${n.toFixed(digits)}${unit}`);
const pct = (r: number | null) => (r === null ? '-' : `${(r * 100).toFixed(r === 1 ? 0 : 2)}%`);
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)}${units[i]}`;
}

export function render(t: Topology, at: Date): string {
  const rows = t.Edges.map((e) => [
    e.source, e.destination, num(e.requestsPerSecond, 1), pct(e.successRate), num(e.p50Ms, 1, 'ms'), num(e.p99Ms, 1, 'ms'),
    e.openConnections, bytes(e.bytesTx), bytes(e.bytesRx), e.denied,
    e.targets.length > 1 || (e.targets[0] && (e.targets[0].subset || e.targets[0].service !== e.destination))
      ? e.targets.map((x) => `${x.service}${x.subset ? `/${x.subset}` : ''} ${num(x.requestsPerSecond, 1)}/s`).join(', ') : '',
  ]);
  const head = `edges over the last minute, ${at.toISOString().slice(11, 19)} UTC`;
  const body = rows.length
    ? table(['SOURCE', 'DESTINATION', 'RPS', 'SUCCESS', 'P50', 'P99', 'OPEN', 'TX', 'RX', 'DENIED', 'TO'], rows)
    : 'no traffic between services in the last minute';
  const missing = t.Unreachable.length ? `\n${t.Unreachable.length} agent(s) did not answer: ${t.Unreachable.map((u) => `${u.Node} (${u.Error})`).join('; ')}` : '';
  return `${head}\n${body}${missing}\n`;
}

export function topCommand(program: Command, g: () => ClientOptions & { format: Format }): void {
  program.command('top')
    .description('the pool\'s edges with requests/s, success rate, latency, connections and bytes, refreshed live')
    .option('--interval <duration>', 'how often to refresh (Go duration)', '2s')
    .option('--once', 'print one snapshot and exit (also when stdout is not a terminal)')
    .addHelpText('after', '\nExamples:\n  nodemesh top\n  nodemesh top --once\n  nodemesh top --format json | jq \'.Edges[] | select(.successRate < 0.99)\'\n')
    .action(async (o: { interval: string; once?: boolean }) => {
      let ms = 0;
      try { ms = parseGoDuration(o.interval); } catch { ms = -1; }
      if (ms < 500) throw new NodemeshError('CLI_USAGE', `--interval wants a duration of at least 500ms, like 2s (got ${JSON.stringify(o.interval)})`, 2);
      const fetchOnce = () => apiCall(g(), 'GET', '/v1/pool/topology') as Promise<Topology>;
      if (g().format === 'json') return void process.stdout.write(`${JSON.stringify(await fetchOnce(), null, 2)}\n`);
      if (o.once || !process.stdout.isTTY) return void process.stdout.write(render(await fetchOnce(), new Date()));
      let stop = false;
      process.once('SIGINT', () => { stop = true; });
      while (!stop) {
        const t = await fetchOnce();
        process.stdout.write(`\x1b[H\x1b[2J${render(t, new Date())}(Ctrl-C to quit)\n`);
        await new Promise((r) => setTimeout(r, ms));
      }
    });
}

// Services: every service with its instances' health, tags and nodes; one service's instances with their checks' output.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { useApi } from '../lib/use-api.js';

interface Check { Name: string; Status: string; Output: string; CheckID: string }
interface Entry { Node: { Node: string; Address: string }; Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Kind?: string }; Checks: Check[] }

const worst = (checks: Check[]) => (checks.some((c) => c.Status === 'critical') ? 'critical' : checks.some((c) => c.Status === 'warning') ? 'warning' : 'passing');

export function Services() {
  const names = useApi<Record<string, string[]>>('/v1/catalog/services');
  const [health, setHealth] = useState<Record<string, Entry[]>>({});
  const [open, setOpen] = useState<string | undefined>();
  useEffect(() => {
    if (!names.data) return;
    for (const n of Object.keys(names.data)) void api<Entry[]>('GET', `/v1/health/service/${encodeURIComponent(n)}`).then((e) => setHealth((h) => ({ ...h, [n]: e })), () => undefined);
  }, [names.data]);
  if (names.error) return <p class="error">{names.error}</p>;
  if (!names.data) return <p>Loading…</p>;
  return (
    <section>
      <h2>Services</h2>
      <table data-testid="services">
        <thead><tr><th>Service</th><th>Health</th><th>Instances</th><th>Tags</th><th>Nodes</th></tr></thead>
        <tbody>
          {Object.keys(names.data).sort().map((n) => {
            const entries = health[n] ?? [];
            const passing = entries.filter((e) => worst(e.Checks) === 'passing').length;
            return (
              <tr key={n} class="clickable" onClick={() => setOpen(open === n ? undefined : n)}>
                <td><strong>{n}</strong></td>
                <td><span class={`badge ${entries.length && passing === entries.length ? 'passing' : passing ? 'warning' : 'critical'}`}>{passing}/{entries.length} passing</span></td>
                <td>{entries.length}</td>
                <td>{(names.data![n] ?? []).join(', ')}</td>
                <td>{[...new Set(entries.map((e) => e.Node.Node))].join(', ')}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {open && <Instances name={open} entries={health[open] ?? []} />}
    </section>
  );
}

function Instances({ name, entries }: { name: string; entries: Entry[] }) {
  return (
    <div class="panel" data-testid="instances">
      <h3>{name}: instances</h3>
      {entries.map((e) => (
        <div key={`${e.Node.Node}/${e.Service.ID}`} class="instance">
          <div><strong>{e.Service.ID}</strong> on {e.Node.Node} at {e.Service.Address || e.Node.Address}:{e.Service.Port} {e.Service.Kind ? `(${e.Service.Kind})` : ''}</div>
          <ul>
            {e.Checks.map((c) => <li key={c.CheckID}><span class={`badge ${c.Status}`}>{c.Status}</span> {c.Name}{c.Output ? <pre>{c.Output}</pre> : null}</li>)}
          </ul>
        </div>
      ))}
    </div>
  );
}

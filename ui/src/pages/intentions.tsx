// Intentions: the list in precedence order; create, change the action of, and delete (with a token); and "would A
// reach B?" answered by the agent with the intention that decides it.

import { useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { useApi } from '../lib/use-api.js';

interface Intention { ID: string; SourceName: string; DestinationName: string; Action: string; Precedence: number; Description?: string; Permissions?: unknown[] }

export function Intentions() {
  const list = useApi<Intention[]>('/v1/connect/intentions');
  const [message, setMessage] = useState<{ error?: string; ok?: string }>({});
  const act = (p: Promise<unknown>, ok: string) => p.then(() => { setMessage({ ok }); list.reload(); }, (e: Error) => setMessage({ error: e.message }));
  return (
    <section>
      <h2>Intentions</h2>
      <Create onCreate={(i) => act(api('POST', '/v1/connect/intentions', i), `created ${i.SourceName} → ${i.DestinationName}`)} />
      {message.error && <p class="error" data-testid="intention-error">{message.error}</p>}
      {message.ok && <p class="ok">{message.ok}</p>}
      {list.error && <p class="error">{list.error}</p>}
      <table data-testid="intentions">
        <thead><tr><th>Source</th><th>Destination</th><th>Action</th><th>Precedence</th><th>Description</th><th /></tr></thead>
        <tbody>
          {(list.data ?? []).map((i) => (
            <tr key={i.ID}>
              <td>{i.SourceName}</td>
              <td>{i.DestinationName}</td>
              <td><span class={`badge ${i.Permissions?.length ? 'warning' : i.Action === 'allow' ? 'passing' : 'critical'}`}>{i.Permissions?.length ? `L7 (${i.Permissions.length} rules)` : i.Action}</span></td>
              <td>{i.Precedence}</td>
              <td>{i.Description ?? ''}</td>
              <td class="actions">
                {!i.Permissions?.length && (
                  <button type="button" onClick={() => act(api('PUT', `/v1/connect/intentions/${i.ID}`, { SourceName: i.SourceName, DestinationName: i.DestinationName, SourceType: 'consul', Action: i.Action === 'allow' ? 'deny' : 'allow', Description: i.Description }), `${i.SourceName} → ${i.DestinationName} is now ${i.Action === 'allow' ? 'deny' : 'allow'}`)}>
                    make {i.Action === 'allow' ? 'deny' : 'allow'}
                  </button>
                )}
                <button type="button" class="danger" onClick={() => act(api('DELETE', `/v1/connect/intentions/${i.ID}`), `deleted ${i.SourceName} → ${i.DestinationName}`)}>delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Check />
    </section>
  );
}

function Create({ onCreate }: { onCreate: (i: { SourceName: string; DestinationName: string; Action: string; Description: string; SourceType: string }) => void }) {
  const [f, setF] = useState({ SourceName: '', DestinationName: '', Action: 'deny', Description: '' });
  return (
    <form class="row" data-testid="create-intention" onSubmit={(e) => { e.preventDefault(); onCreate({ ...f, SourceType: 'consul' }); }}>
      <input name="source" placeholder="source (or *)" value={f.SourceName} onInput={(e) => setF({ ...f, SourceName: (e.target as HTMLInputElement).value })} required />
      <span>→</span>
      <input name="destination" placeholder="destination (or *)" value={f.DestinationName} onInput={(e) => setF({ ...f, DestinationName: (e.target as HTMLInputElement).value })} required />
      <select name="action" value={f.Action} onChange={(e) => setF({ ...f, Action: (e.target as HTMLSelectElement).value })}>
        <option value="deny">deny</option>
        <option value="allow">allow</option>
      </select>
      <input name="description" placeholder="description" value={f.Description} onInput={(e) => setF({ ...f, Description: (e.target as HTMLInputElement).value })} />
      <button type="submit">Create</button>
    </form>
  );
}

function Check() {
  const [q, setQ] = useState({ source: '', destination: '' });
  const [answer, setAnswer] = useState<{ allowed?: boolean; by?: string; error?: string }>();
  const run = async () => {
    try {
      const c = await api<{ Allowed: boolean }>('GET', `/v1/connect/intentions/check?source=${encodeURIComponent(q.source)}&destination=${encodeURIComponent(q.destination)}`);
      const m = await api<Record<string, Intention[]>>('GET', `/v1/connect/intentions/match?by=destination&name=${encodeURIComponent(q.destination)}`);
      const hit = (m[q.destination] ?? []).find((i) => i.SourceName === q.source || i.SourceName === '*');
      setAnswer({ allowed: c.Allowed, by: hit ? `${hit.SourceName} → ${hit.DestinationName} (${hit.Action}, precedence ${hit.Precedence})` : 'no intention: the default policy' });
    } catch (e) {
      setAnswer({ error: (e as Error).message });
    }
  };
  return (
    <div class="panel">
      <h3>Would A reach B?</h3>
      <form class="row" data-testid="check-intention" onSubmit={(e) => { e.preventDefault(); void run(); }}>
        <input name="check-source" placeholder="source" value={q.source} onInput={(e) => setQ({ ...q, source: (e.target as HTMLInputElement).value })} required />
        <span>→</span>
        <input name="check-destination" placeholder="destination" value={q.destination} onInput={(e) => setQ({ ...q, destination: (e.target as HTMLInputElement).value })} required />
        <button type="submit">Check</button>
      </form>
      {answer?.error && <p class="error">{answer.error}</p>}
      {answer && !answer.error && <p data-testid="check-answer"><span class={`badge ${answer.allowed ? 'passing' : 'critical'}`}>{answer.allowed ? 'allowed' : 'denied'}</span> by {answer.by}</p>}
    </div>
  );
}

// Config entries, read-only: each kind's entries as JSON (splits also show as weights on the topology).

import { useApi } from '../lib/use-api.js';

const KINDS = ['service-defaults', 'proxy-defaults', 'service-router', 'service-splitter', 'service-resolver', 'mesh'];

export function Config() {
  return (
    <section>
      <h2>Config entries</h2>
      {KINDS.map((k) => <Kind key={k} kind={k} />)}
    </section>
  );
}

function Kind({ kind }: { kind: string }) {
  const entries = useApi<{ Name: string }[]>(`/v1/config/${kind}`);
  if (entries.error) return <p class="error">{kind}: {entries.error}</p>;
  if (!entries.data?.length) return null;
  return (
    <div class="panel" data-testid={`config-${kind}`}>
      <h3>{kind}</h3>
      {entries.data.map((e) => <details key={e.Name}><summary>{e.Name}</summary><pre>{JSON.stringify(e, null, 2)}</pre></details>)}
    </div>
  );
}

// The live topology: services as nodes, calls as edges coloured by success rate and labelled with requests/s and p99,
// denied edges red and dashed, a split's weights on its edge; updated from the agent's stream without reloading.
// Clicking an edge shows its figures, the intentions that decide it and its denials.

import { useEffect, useState } from 'preact/hooks';
import { api, stream } from '../lib/api.js';
import { bytes, health, ms, percent, rate } from '../lib/format.js';
import { layout } from '../lib/topology-layout.js';

interface Target { service: string; subset: string; requestsPerSecond: number }
interface Edge { source: string; destination: string; requestsPerSecond: number; successRate: number | null; p50Ms: number | null; p99Ms: number | null; openConnections: number; bytesTx: number; bytesRx: number; denied: number; deniedBy: Record<string, number>; targets: Target[] }
interface Splitter { Splits: { Weight: number; Service?: string; ServiceSubset?: string }[] }
interface Topology { Edges: Edge[]; Unreachable: { Node: string; Error: string }[] }
interface Intention { ID: string; SourceName: string; DestinationName: string; Action: string; Precedence: number; Permissions?: unknown[] }

const SIZE = { width: 900, height: 460 };

export function TopologyPage() {
  const [topo, setTopo] = useState<Topology>();
  const [error, setError] = useState<string>();
  const [updated, setUpdated] = useState<Date>();
  const [picked, setPicked] = useState<string>();
  useEffect(() => {
    const stop = new AbortController();
    const run = () => stream('/v1/pool/topology/stream?interval=2', (data) => { setTopo(JSON.parse(data) as Topology); setUpdated(new Date()); setError(undefined); }, stop.signal)
      .catch((e: Error) => { if (!stop.signal.aborted) { setError(`live updates stopped (${e.message}): retrying`); setTimeout(run, 3000); } });
    void run();
    return () => stop.abort();
  }, []);
  if (!topo) return <p>{error ?? 'Waiting for the first update…'}</p>;
  const pos = layout(topo.Edges, SIZE);
  const edge = topo.Edges.find((e) => `${e.source}→${e.destination}` === picked);
  return (
    <section>
      <h2>Topology <small data-testid="updated">live, {updated?.toLocaleTimeString()}</small></h2>
      {error && <p class="error">{error}</p>}
      {topo.Unreachable.length > 0 && <p class="warn">Not answering: {topo.Unreachable.map((u) => `${u.Node} (${u.Error})`).join('; ')}</p>}
      {topo.Edges.length === 0 ? <p data-testid="no-edges">No traffic between services in the last minute.</p> : (
        <svg viewBox={`0 0 ${SIZE.width} ${SIZE.height}`} class="topology" data-testid="topology" role="img" aria-label="service topology">
          <defs>
            {['ok', 'warn', 'bad', 'idle'].map((h) => (
              <marker key={h} id={`arrow-${h}`} viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class={`arrow ${h}`} /></marker>
            ))}
          </defs>
          {topo.Edges.map((e) => {
            const a = pos.get(e.source)!;
            const b = pos.get(e.destination)!;
            const h = health(e.successRate, e.denied);
            const id = `${e.source}→${e.destination}`;
            const len = Math.hypot(b.x - a.x, b.y - a.y) || 1;
            const end = { x: b.x - ((b.x - a.x) / len) * 46, y: b.y - ((b.y - a.y) / len) * 22 };
            const split = e.targets.length > 1 || (e.targets[0] && (e.targets[0].subset || e.targets[0].service !== e.destination));
            const total = e.targets.reduce((s, t) => s + t.requestsPerSecond, 0) || 1;
            return (
              <g key={id} class={`edge ${h} ${e.denied ? 'denied' : ''} ${picked === id ? 'picked' : ''}`} data-edge={id} data-health={h} onClick={() => setPicked(id)}>
                <line x1={a.x} y1={a.y} x2={end.x} y2={end.y} marker-end={`url(#arrow-${h})`} />
                <line x1={a.x} y1={a.y} x2={end.x} y2={end.y} class="hit" />
                <text x={(a.x + b.x) / 2} y={(a.y + b.y) / 2 - 8} class="label">
                  {e.successRate === null ? (e.denied ? `${e.denied} denied` : `${e.openConnections} open`) : `${rate(e.requestsPerSecond)}/s · p99 ${ms(e.p99Ms)}`}
                </text>
                {split && <text x={(a.x + b.x) / 2} y={(a.y + b.y) / 2 + 12} class="label split">{e.targets.map((t) => `${t.service}${t.subset ? `/${t.subset}` : ''} ${Math.round((t.requestsPerSecond / total) * 100)}%`).join(' · ')}</text>}
              </g>
            );
          })}
          {[...pos].map(([name, p]) => (
            <g key={name} class="service" data-service={name}>
              <rect x={p.x - 46} y={p.y - 18} width={92} height={36} rx={8} />
              <text x={p.x} y={p.y + 5}>{name}</text>
            </g>
          ))}
        </svg>
      )}
      {edge && <EdgePanel edge={edge} />}
    </section>
  );
}

function EdgePanel({ edge }: { edge: Edge }) {
  const [intentions, setIntentions] = useState<Intention[] | string>();
  const [splitter, setSplitter] = useState<Splitter>();
  useEffect(() => {
    api<Record<string, Intention[]>>('GET', `/v1/connect/intentions/match?by=destination&name=${encodeURIComponent(edge.destination)}`)
      .then((m) => setIntentions((m[edge.destination] ?? []).filter((i) => i.SourceName === edge.source || i.SourceName === '*')), (e: Error) => setIntentions(e.message));
    api<Splitter>('GET', `/v1/config/service-splitter/${encodeURIComponent(edge.destination)}`).then(setSplitter, () => setSplitter(undefined));
  }, [edge.source, edge.destination]);
  const reasons = Object.entries(edge.deniedBy ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <div class="panel" data-testid="edge-panel">
      <h3>{edge.source} → {edge.destination}</h3>
      <table class="figures">
        <tbody>
          <tr><th>Requests/s</th><td>{rate(edge.requestsPerSecond)}</td><th>Success</th><td>{percent(edge.successRate)}</td></tr>
          <tr><th>p50</th><td>{ms(edge.p50Ms)}</td><th>p99</th><td>{ms(edge.p99Ms)}</td></tr>
          <tr><th>Open connections</th><td>{edge.openConnections}</td><th>Denied (last minute)</th><td data-testid="edge-denied">{edge.denied}</td></tr>
          <tr><th>Bytes to {edge.destination}</th><td>{bytes(edge.bytesTx)}</td><th>Bytes back</th><td>{bytes(edge.bytesRx)}</td></tr>
        </tbody>
      </table>
      {reasons.length > 0 && <p data-testid="edge-denials">Denials in the last minute: {reasons.map(([r, n]) => `${r} × ${n}`).join(', ')}</p>}
      {splitter && (
        <p data-testid="edge-split">Split configured: {splitter.Splits.map((s) => `${s.Service ?? edge.destination}${s.ServiceSubset ? `/${s.ServiceSubset}` : ''} ${s.Weight}%`).join(' · ')}
          {edge.targets.length > 0 && <> — as it happened: {edge.targets.map((t) => `${t.service}${t.subset ? `/${t.subset}` : ''} ${rate(t.requestsPerSecond)}/s`).join(' · ')}</>}</p>
      )}
      <h4>Intentions deciding it (highest precedence first)</h4>
      {typeof intentions === 'string' ? <p class="error">{intentions}</p> : !intentions?.length ? <p>None: the default policy decides.</p> : (
        <ul>{intentions.map((i) => <li key={i.ID}><span class={`badge ${i.Action === 'allow' ? 'passing' : 'critical'}`}>{i.Permissions?.length ? 'L7' : i.Action}</span> {i.SourceName} → {i.DestinationName} (precedence {i.Precedence})</li>)}</ul>
      )}
    </div>
  );
}

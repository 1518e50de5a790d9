// Nodes: the pool's members (status, address, tags) and the round trip this agent estimates to each from Serf's network coordinates.

import { useApi } from '../lib/use-api.js';
import { ms } from '../lib/format.js';

interface Member { Name: string; Addr: string; Port: number; Status: number; Tags: Record<string, string> }
interface Coord { Node: string; Coord: { Vec: number[]; Error: number; Adjustment: number; Height: number } }
interface Self { Config: { NodeName: string } }

const STATUS = ['none', 'alive', 'leaving', 'left', 'failed'];

function rtt(a: Coord['Coord'], b: Coord['Coord']): number {
  const d = Math.sqrt(a.Vec.reduce((s, x, i) => s + (x - b.Vec[i]) ** 2, 0)) + a.Height + b.Height;
  const adj = d + a.Adjustment + b.Adjustment;
  return (adj > 0 ? adj : d) * 1000;
}

export function Nodes() {
  const members = useApi<Member[]>('/v1/agent/members');
  const coords = useApi<Coord[]>('/v1/coordinate/nodes');
  const self = useApi<Self>('/v1/agent/self');
  if (members.error) return <p class="error">{members.error}</p>;
  if (!members.data) return <p>Loading…</p>;
  const byNode = new Map((coords.data ?? []).map((c) => [c.Node, c.Coord]));
  const mine = self.data && byNode.get(self.data.Config.NodeName);
  return (
    <section>
      <h2>Nodes</h2>
      <table data-testid="nodes">
        <thead><tr><th>Node</th><th>Status</th><th>Address</th><th>Est. RTT from here</th><th>Runs</th></tr></thead>
        <tbody>
          {[...members.data].sort((a, b) => a.Name.localeCompare(b.Name)).map((m) => {
            const c = byNode.get(m.Name);
            return (
              <tr key={m.Name}>
                <td><strong>{m.Name}</strong>{self.data?.Config.NodeName === m.Name ? ' (this agent)' : ''}</td>
                <td><span class={`badge ${m.Status === 1 ? 'passing' : 'critical'}`}>{STATUS[m.Status] ?? m.Status}</span></td>
                <td>{m.Addr}:{m.Port}</td>
                <td>{mine && c ? ms(rtt(mine, c)) : '–'}</td>
                <td>{m.Tags.build === 'nodemesh' ? 'nodemesh' : 'serf'}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

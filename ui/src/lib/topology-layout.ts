// Where each service sits on the topology: callers left of what they call (layers by longest call path, cycles cut),
// services of a layer spread top to bottom in name order.

export interface Point { x: number; y: number }

export function layout(edges: { source: string; destination: string }[], size: { width: number; height: number }): Map<string, Point> {
  const names = [...new Set(edges.flatMap((e) => [e.source, e.destination]))].sort();
  const layer = new Map(names.map((n) => [n, 0]));
  // Longest path by relaxation; at most |names| rounds, so a cycle (a calls b calls a) cannot loop forever.
  for (let round = 0; round < names.length; round++) {
    let moved = false;
    for (const e of edges) {
      if (e.source === e.destination) continue;
      const want = layer.get(e.source)! + 1;
      if (want > layer.get(e.destination)! && want < names.length) {
        layer.set(e.destination, want);
        moved = true;
      }
    }
    if (!moved) break;
  }
  const columns = new Map<number, string[]>();
  for (const n of names) columns.set(layer.get(n)!, [...(columns.get(layer.get(n)!) ?? []), n]);
  const used = [...columns.keys()].sort((a, b) => a - b);
  const out = new Map<string, Point>();
  used.forEach((l, col) => {
    const members = columns.get(l)!;
    members.forEach((n, row) => out.set(n, {
      x: Math.round(((col + 1) * size.width) / (used.length + 1)),
      y: Math.round(((row + 1) * size.height) / (members.length + 1)),
    }));
  });
  return out;
}

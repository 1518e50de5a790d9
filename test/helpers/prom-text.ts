// Fixture: reads Prometheus text exposition (what /metrics answers) into series, to check metrics by name and labels in any label order.

export interface Series { name: string; labels: Record<string, string>; value: number }
export interface Family { name: string; type: string; help: string }

/** Every sample line, with its labels unescaped. */
export function parseSeries(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The # HELP and # TYPE of every family. */
export function parseFamilies(text: string): Family[] {
  const fams = new Map<string, Family>();
  for (const line of text.split('\n')) {
    const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    const f = fams.get(m[2]) ?? { name: m[2], type: '', help: '' };
    if (m[1] === 'HELP') f.help = m[3];
    else f.type = m[3];
    fams.set(m[2], f);
  }
  return [...fams.values()];
}

/** The sum over every series of `name` whose labels include `labels`. */
export function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseSeries(text).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

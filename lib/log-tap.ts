// A tap on the agent's log: each JSON line the logger writes is handed to whoever listens (GET /v1/agent/monitor), at
// the level each listener asked for, in Consul's text form or as JSON.

/** pino's numeric levels by Consul's names (`err` and `warning` as hclog also takes them). */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, warning: 40, err: 50, error: 50 };
const NAMES: [number, string][] = [[60, 'ERROR'], [50, 'ERROR'], [40, 'WARN'], [30, 'INFO'], [20, 'DEBUG'], [10, 'TRACE']];
/** Fields pino adds that a monitor line does not repeat. */
const OWN_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'component']);

/** A level name as Consul takes it (case-insensitive); undefined for one it does not know. */
export function levelNumber(name: string): number | undefined {
  return LEVELS[name.toLowerCase()];
}

interface Listener { min: number; json: boolean; send(line: string): void }

export class LogTap {
  private readonly listeners = new Set<Listener>();

  get listening(): number {
    return this.listeners.size;
  }

  /** Lines at `min` or above go to `send` (newline included) until the returned function is called. */
  subscribe(min: number, json: boolean, send: (line: string) => void): () => void {
    const l: Listener = { min, json, send };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** One line as the logger wrote it (pino's JSON). Never throws: a listener's failure is its own. */
  write(line: string): void {
    if (!this.listeners.size) return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const level = typeof rec.level === 'number' ? rec.level : 30;
    let text: string | undefined;
    let json: string | undefined;
    for (const l of this.listeners) {
      if (level < l.min) continue;
      try {
        if (l.json) l.send(json ??= renderLine(rec, true));
        else l.send(text ??= renderLine(rec, false));
      } catch {
        this.listeners.delete(l);
      }
    }
  }
}

/** One record (pino's fields: level, time, msg, component, …) as a monitor line, newline included. */
export function renderLine(rec: Record<string, unknown>, json: boolean): string {
  const level = typeof rec.level === 'number' ? rec.level : 30;
  return `${json ? asConsulJson(rec, level) : asConsulText(rec, level)}\n`;
}

function levelName(level: number): string {
  return (NAMES.find(([n]) => level >= n) ?? [10, 'TRACE'])[1];
}

function fieldText(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

/** hclog's line: `2026-12-03T18:37:03.529Z [INFO]  agent: Synced service: service=x`. */
function asConsulText(rec: Record<string, unknown>, level: number): string {
  const time = new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toISOString();
  const module = typeof rec.component === 'string' ? `agent.${rec.component}` : 'agent';
  const fields = Object.entries(rec).filter(([k]) => !OWN_FIELDS.has(k)).map(([k, v]) => `${k}=${fieldText(v)}`);
  const name = levelName(level);
  return `${time} [${name}]${' '.repeat(6 - name.length)}${module}: ${String(rec.msg ?? '')}${fields.length ? `: ${fields.join(' ')}` : ''}`;
}

/** hclog's JSON form (`?logjson`): `@level`, `@message`, `@module`, `@timestamp`, then the fields. */
function asConsulJson(rec: Record<string, unknown>, level: number): string {
  const fields = Object.fromEntries(Object.entries(rec).filter(([k]) => !OWN_FIELDS.has(k)));
  return JSON.stringify({
    '@level': levelName(level).toLowerCase(), '@message': String(rec.msg ?? ''),
    '@module': typeof rec.component === 'string' ? `agent.${rec.component}` : 'agent',
    '@timestamp': new Date(typeof rec.time === 'number' ? rec.time : Date.now()).toISOString(), ...fields,
  });
}

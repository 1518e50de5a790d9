// The UI's client of the agent's HTTP API: the token (asked for, kept in this tab's session only) on every call, and
// the agent's error text as the message.

const TOKEN_KEY = 'nodemesh-token';

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(t: string): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (token()) h['X-Consul-Token'] = token();
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) {
    const hint = res.status === 403 ? (token() ? ' (the token was refused)' : ' (this needs a token: set one above)') : '';
    throw new ApiError(res.status, `${res.status}: ${text.trim() || res.statusText}${hint}`);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Server-sent events from `path` (read with fetch, so the token goes in a header, not the URL), until `signal` aborts. */
export async function stream(path: string, onEvent: (data: string) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(path, { headers: headers(false), signal });
  if (!res.ok || !res.body) throw new ApiError(res.status, `${res.status}: ${(await res.text()).trim()}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) onEvent(data);
    }
  }
}

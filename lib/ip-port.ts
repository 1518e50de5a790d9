// An address given as `IP`, `IP:port` or `[IPv6]:port` (no names): parsed, or undefined when it is none of these.

import { isIP } from 'node:net';

export interface IpPort { host: string; port: number }

export function parseIpPort(text: string, defaultPort: number): IpPort | undefined {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(text);
  const host = m?.[1] ?? (isIP(text) === 6 ? text : '');
  const port = m?.[2] ? Number(m[2]) : defaultPort;
  return isIP(host) && port >= 1 && port <= 65535 ? { host, port } : undefined;
}

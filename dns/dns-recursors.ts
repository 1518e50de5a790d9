// Names outside the agent's domain, forwarded over UDP to the configured recursors in turn (Consul's `recursors`).

import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import packet from 'dns-packet';
import { NodemeshError } from '../lib/errors.js';
import { parseIpPort, type IpPort } from '../lib/ip-port.js';

/** How long one recursor has to answer before the next is asked (Consul's recursor_timeout). */
const RECURSOR_TIMEOUT_MS = 2000;

type Upstream = IpPort;

/** `IP`, `IP:port` or `[IPv6]:port`; a recursor must be an address (a name would need DNS to find DNS). */
export function parseRecursor(text: string): Upstream {
  const at = parseIpPort(text, 53);
  if (!at) throw new NodemeshError('CONFIG_INVALID', `invalid recursor ${JSON.stringify(text)}: an IP address with an optional port, e.g. 127.0.0.53 or 127.0.0.53:53`, 2);
  return at;
}

export class Recursors {
  private readonly upstreams: Upstream[];

  constructor(list: string[], private readonly timeoutMs = RECURSOR_TIMEOUT_MS) {
    this.upstreams = list.map(parseRecursor);
  }

  get count(): number {
    return this.upstreams.length;
  }

  /** The first answer with the query's ID from a recursor, in order; undefined when none answers. */
  async forward(query: Buffer, id: number): Promise<Buffer | undefined> {
    for (const u of this.upstreams) {
      const answer = await this.ask(u, query, id);
      if (answer) return answer;
    }
    return undefined;
  }

  private ask(u: Upstream, query: Buffer, id: number): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const sock = createSocket(isIP(u.host) === 6 ? 'udp6' : 'udp4');
      const done = (out: Buffer | undefined) => {
        clearTimeout(timer);
        sock.close();
        resolve(out);
      };
      const timer = setTimeout(() => done(undefined), this.timeoutMs);
      sock.on('error', () => done(undefined));
      sock.on('message', (msg) => {
        // Only a well-formed response to this query; anything else is ignored until the timeout.
        try {
          const d = packet.decode(msg);
          if (d.flag_qr && d.id === id) done(msg);
        } catch { /* not a DNS answer */ }
      });
      sock.send(query, u.port, u.host, (e) => { if (e) done(undefined); });
    });
  }
}

// IPv4 ranges in CIDR form: parsed to a base and a size, and addresses back to dotted form.

import { NodemeshError } from './errors.js';

export interface Ipv4Range { base: number; size: number; cidr: string }

/** An IPv4 CIDR with room for at least 2 usable addresses (/30 or wider); `what` names it in the error. */
export function parseIpv4Range(cidr: string, what = 'IPv4 range'): Ipv4Range {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || !(bits >= 1 && bits <= 30)) {
    throw new NodemeshError('CONFIG_INVALID', `invalid ${what} ${JSON.stringify(cidr)}: an IPv4 CIDR from /1 to /30, e.g. 240.0.0.0/4`, 2);
  }
  const size = 2 ** (32 - bits);
  const addr = octets[0] * 2 ** 24 + (octets[1] << 16) + (octets[2] << 8) + octets[3];
  return { base: addr - (addr % size), size, cidr };
}

export const ipv4ToString = (n: number) => [Math.floor(n / 2 ** 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

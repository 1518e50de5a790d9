// The source address for an agent's outgoing connections: its bind address when that is one specific IP on the same
// side of loopback as the destination, so peers (and firewalls) see the node's own address, not 127.0.0.1 or a route's pick.

import { isIPv4 } from 'node:net';

const isLoopback = (ip: string) => ip.startsWith('127.') || ip === '::1';

/** `localAddress` for a connection from an agent bound to `bind` to `host`, or undefined to let the kernel choose. */
export function sourceAddressFor(bind: string | undefined, host: string): string | undefined {
  if (!bind || bind === '0.0.0.0' || bind === '::' || !isIPv4(bind) || !isIPv4(host)) return undefined;
  return isLoopback(bind) === isLoopback(host) ? bind : undefined;
}

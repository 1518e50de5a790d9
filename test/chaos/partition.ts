// Network partitions between loopback addresses with iptables: DROP rules in a chain of our own, only for 127.x
// pairs, removed on heal and at exit (even after a failed test).

import { execFileSync } from 'node:child_process';

const CHAIN = 'NODEMESH-CHAOS';
let hooked = false;
const ipt = (...args: string[]) => execFileSync('iptables', ['-w', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });

/** Why partitions cannot be made here (iptables missing, or no CAP_NET_ADMIN), or undefined when they can. */
export function partitionUnavailable(): string | undefined {
  try {
    ipt('-L', 'INPUT', '-n');
    return undefined;
  } catch (e) {
    return `iptables is not usable here (${(e as Error).message.split('\n')[0]}): partitions need root or CAP_NET_ADMIN`;
  }
}

export class Partition {
  /** Drops every packet between each address of `left` and each of `right`, both ways (gossip UDP/TCP and tunnels). */
  cut(left: string[], right: string[]): void {
    for (const ip of [...left, ...right]) if (!/^127\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`partition: ${ip} is not a loopback address`);
    this.heal();
    ipt('-N', CHAIN);
    ipt('-I', 'INPUT', '-j', CHAIN);
    for (const l of left) {
      for (const r of right) {
        ipt('-A', CHAIN, '-s', l, '-d', r, '-j', 'DROP');
        ipt('-A', CHAIN, '-s', r, '-d', l, '-j', 'DROP');
      }
    }
    if (!hooked) {
      hooked = true;
      // Never leave DROP rules behind: healed at exit, and on the signals a CI runner or a developer sends.
      process.once('exit', () => this.heal());
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { this.heal(); process.exit(130); });
    }
  }

  /** Removes the rules and the chain (also a leftover one from an earlier crashed run). */
  heal(): void {
    try { ipt('-D', 'INPUT', '-j', CHAIN); } catch { /* not linked */ }
    try { ipt('-F', CHAIN); } catch { /* no chain */ }
    try { ipt('-X', CHAIN); } catch { /* no chain */ }
  }
}

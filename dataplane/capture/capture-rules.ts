// The nftables ruleset of transparent capture, as text for `nft -f`: virtual IPs redirected to the agent, workloads' ports guarded.

import { NodemeshError } from '../../lib/errors.js';

/** The table nodemesh owns; nothing else of the host's rules is touched. */
export const CAPTURE_TABLE = 'nodemesh';

export interface CapturePlan {
  /** Each mesh service's virtual IP and the agent's transparent listener port for it. */
  redirects: { vip: string; port: number }[];
  /** Workloads of this node whose traffic must arrive through the mesh: their address and port. */
  guarded: { address: string; port: number }[];
  /** strict: traffic to a guarded workload from outside the node is dropped; permissive: counted and let through. */
  mode: 'strict' | 'permissive';
  /** Destination ports never captured (outbound). */
  excludeOutboundPorts: number[];
}

const ipv4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * The whole table, replaced in one transaction (`nft -f` applies a file atomically): created empty if missing, deleted,
 * and written again — so applying twice is the same as once, and a stale rule never outlives a change.
 */
export function captureRuleset(plan: CapturePlan): string {
  for (const a of [...plan.redirects.map((r) => r.vip), ...plan.guarded.map((g) => g.address)]) {
    if (!ipv4.test(a)) throw new NodemeshError('CAPTURE_RULES_INVALID', `capture rules take IPv4 addresses only: ${JSON.stringify(a)}`, 500);
  }
  const ports = [...plan.redirects.map((r) => r.port), ...plan.guarded.map((g) => g.port), ...plan.excludeOutboundPorts];
  if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new NodemeshError('CAPTURE_RULES_INVALID', 'capture rules take ports from 1 to 65535', 500);
  const skip = plan.excludeOutboundPorts.length ? [`    tcp dport { ${plan.excludeOutboundPorts.join(', ')} } return`] : [];
  const redirect = plan.redirects.map((r) => `    ip daddr ${r.vip} meta l4proto tcp redirect to :${r.port}`);
  const verdict = plan.mode === 'strict' ? 'drop' : 'accept';
  const guard = (extra: string) => plan.guarded.map((g) => `    ip daddr ${g.address} tcp dport ${g.port}${extra} counter ${verdict} comment "${plan.mode}"`);
  return [
    `table inet ${CAPTURE_TABLE}`,
    `delete table inet ${CAPTURE_TABLE}`,
    `table inet ${CAPTURE_TABLE} {`,
    // Connections from workloads in other network namespaces (pods) arrive here; the host's own go through output.
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...skip, ...redirect,
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...skip, ...redirect,
    '  }',
    // A transparent listener takes only redirected connections; a workload's port only what the agent brings it.
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...(plan.redirects.length ? [`    tcp dport { ${plan.redirects.map((r) => r.port).join(', ')} } ct status ! dnat counter drop`] : []),
    ...guard(' iifname != "lo"'),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...guard(''),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Removes the table (and with it every rule nodemesh installed); a missing table is not an error. */
export function removalRuleset(): string {
  return `table inet ${CAPTURE_TABLE}\ndelete table inet ${CAPTURE_TABLE}\n`;
}

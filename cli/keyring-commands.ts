// `nodemesh keyring list|install|use|remove`: one agent's gossip keys over /v1/operator/keyring (run each step on every agent).

import type { Command } from 'commander';
import type { ClientOptions } from './api-client.js';
import { apiCall, resolveAddr } from './api-client.js';
import type { Format } from './table.js';
import { output } from './table.js';

type Globals = () => ClientOptions & { format: Format };

interface KeyringResponse { WAN: boolean; Keys: Record<string, number>; PrimaryKeys?: Record<string, number> }

/** The write verbs: HTTP method, help, and what to say (and do next) once the agent has taken the key. */
const WRITES = [
  { verb: 'install', method: 'POST', help: 'add a key that this agent decrypts with (it still encrypts with its primary key)',
    done: (at: string) => `Key installed on the agent at ${at}. Install it on every agent, then make it primary with 'nodemesh keyring use <key>'.` },
  { verb: 'use', method: 'PUT', help: 'make an installed key the one this agent encrypts with',
    done: (at: string) => `Key is now primary on the agent at ${at}. Once it is primary on every agent, remove the old key with 'nodemesh keyring remove <old-key>'.` },
  { verb: 'remove', method: 'DELETE', help: 'remove a key that is not primary from this agent',
    done: (at: string) => `Key removed from the agent at ${at}.` },
] as const;

export function keyringCommands(program: Command, g: Globals): void {
  const keyring = program.command('keyring')
    .description('the agent\'s gossip encryption keys; each command changes only the agent it talks to. Rotate: install the new key on every agent, then use it on every agent, then remove the old one on every agent');

  keyring.command('list')
    .description('list the agent\'s gossip keys and which one is primary')
    .action(async () => {
      const rings = await apiCall(g(), 'GET', '/v1/operator/keyring') as KeyringResponse[];
      const lan = rings.find((r) => !r.WAN) ?? { Keys: {}, PrimaryKeys: {} };
      const primary = new Set(Object.keys(lan.PrimaryKeys ?? {}));
      const keys = Object.keys(lan.Keys).sort((a, b) => Number(primary.has(b)) - Number(primary.has(a)));
      output(g().format, rings, ['KEY', 'PRIMARY'], keys.map((k) => [k, primary.has(k) ? 'yes' : 'no']), 'no gossip keys');
    });

  for (const w of WRITES) {
    keyring.command(`${w.verb} <key>`)
      .description(w.help)
      .action(async (key: string) => {
        await apiCall(g(), w.method, '/v1/operator/keyring', { Key: key });
        process.stdout.write(g().format === 'json' ? `${JSON.stringify({ [w.verb]: true })}\n` : `${w.done(resolveAddr(g().httpAddr))}\n`);
      });
  }
}

// The agent's logger: JSON lines for machines, readable lines on a terminal; secrets redacted.

import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from '../config/agent-config.js';
import type { LogTap } from '../lib/log-tap.js';

/** The logger; with a tap, every line it writes (secrets already redacted) also goes to the tap's listeners. */
export function createLogger(level: LogLevel, json: boolean | undefined, tap?: LogTap): Logger {
  const asJson = json ?? !process.stdout.isTTY;
  const opts = {
    level,
    base: { pid: process.pid },
    ...(tap ? { hooks: { streamWrite: (s: string) => { tap.write(s); return s; } } } : {}),
    redact: { paths: ['token', 'aclToken', 'acl_token', '*.aclToken', '*.token', 'privateKey', '*.privateKey'], censor: '[redacted]' },
  };
  if (asJson) return pino(opts, pino.destination({ fd: 1, sync: true }));
  return pino(opts, pretty({ sync: true, colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}

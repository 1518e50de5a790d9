// GET /v1/agent/monitor: this agent's log as it is written, in Consul's text lines (or ?logjson), for `consul monitor`
// and `nodemesh monitor`.

import { NodemeshError } from '../lib/errors.js';
import { levelNumber, renderLine } from '../lib/log-tap.js';
import type { ApiDeps } from './api-deps.js';
import { queryFlag } from './api-deps.js';
import { tokenAllows, type Router } from './http-router.js';

/** A monitor that reads slower than this much buffered output loses lines (counted and said) rather than memory. */
const MAX_BUFFERED = 1024 * 1024;

export function agentMonitorRoutes(r: Router, d: ApiDeps): void {
  r.on('GET', '/v1/agent/monitor', async (ctx) => {
    // The log names services, peers and addresses: with a token set, only its holder reads it (Consul: operator:read).
    if (!tokenAllows(ctx.req, ctx.query, d.config.aclToken)) throw new NodemeshError('ACL_TOKEN_DENIED', 'Permission denied: the monitor needs the agent\'s ACL token', 403);
    const name = ctx.query.get('loglevel') || 'info';
    const min = levelNumber(name);
    if (min === undefined) throw new NodemeshError('API_BAD_QUERY', `Bad request: Unknown log level: ${name} (trace, debug, info, warn or error)`, 400);
    const json = queryFlag(ctx.query, 'logjson', 'Invalid value for ?logjson');
    const tap = d.logTap;
    if (!tap) throw new NodemeshError('MONITOR_UNAVAILABLE', 'this agent\'s logger has no monitor tap (it was started in-process with a logger of its own): read its log instead', 501);
    const { res } = ctx;
    res.writeHead(200, { 'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.flushHeaders();
    const notice = (msg: string, level = 40) => res.write(renderLine({ level, time: Date.now(), component: 'monitor', msg }, json));
    const agentLevel = levelNumber(d.config.logLevel) ?? 30;
    if (min < agentLevel) notice(`this agent logs at ${d.config.logLevel}, so lines below it are not written: restart it with --log-level ${name} to see them`);
    let dropped = 0;
    const unsubscribe = tap.subscribe(min, json, (line) => {
      if (res.writableLength > MAX_BUFFERED) { dropped++; return; }
      if (dropped) { notice(`monitor dropped ${dropped} lines: it read slower than the agent logged`); dropped = 0; }
      res.write(line);
    });
    try {
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) return resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      unsubscribe();
      res.end();
    }
  });
}

// `nodemesh agent`: load config, start the agent, and stop it cleanly on SIGINT/SIGTERM or leave.

import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { isNodemeshError } from '../lib/errors.js';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { loadConfig } from '../config/config-load.js';
import { createLogger } from '../agent/log.js';
import { LogTap } from '../lib/log-tap.js';

interface AgentFlags {
  dev?: boolean; node?: string; datacenter?: string; dataDir?: string; bind?: string; client?: string;
  httpPort?: string; configFile: string[]; configDir: string[]; logLevel?: string; logJson?: boolean; aclToken?: string;
  serfLanPort?: string; join: string[]; retryJoin: string[]; encrypt?: string; rejoinAfterLeave?: boolean; consulAddr?: string; consulToken?: string;
  waive?: string[]; dnsPort?: string; dnsAddr?: string; metricsPort?: string; metricsAddr?: string; peerPort?: string; recursor: string[]; domain?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function agentCommand(program: Command): void {
  program.command('agent')
    .description('run a nodemesh agent on this node')
    .option('--dev', 'development mode: loopback addresses, state in a temporary directory')
    .option('--node <name>', 'node name (default: hostname)')
    .option('--datacenter <dc>', 'datacenter (default: dc1)')
    .option('--data-dir <dir>', 'where the agent keeps its state')
    .option('--bind <addr>', 'gossip and data-plane address (default: 127.0.0.1 in dev, 0.0.0.0 otherwise)')
    .option('--client <addr>', 'HTTP API address (default: 127.0.0.1)')
    .option('--http-port <port>', 'HTTP API port (default: 8500; 0 picks a free one)')
    .option('--config-file <file>', 'JSON config file (repeatable)', collect, [])
    .option('--config-dir <dir>', 'directory of JSON config files, read in name order (repeatable)', collect, [])
    .option('--log-level <level>', 'trace, debug, info, warn or error (default: info)')
    .option('--log-json', 'log JSON lines even on a terminal')
    .option('--acl-token <token>', 'token every API write must carry (or env NODEMESH_ACL_TOKEN)')
    .option('--serf-lan-port <port>', 'gossip port, UDP and TCP (default: 8301; 0 picks a free one)')
    .option('--join <addr>', 'join the pool through this agent at start (repeatable; failing to join is fatal)', collect, [])
    .option('--retry-join <addr>', 'join through this agent, retrying with backoff until it answers (repeatable)', collect, [])
    .option('--encrypt <key>', 'gossip encryption key, base64 of 16/24/32 bytes (see nodemesh keygen)')
    .option('--consul-addr <url>', 'use this Consul agent for the catalog, CA and intentions instead of the gossip pool (or env CONSUL_HTTP_ADDR)')
    .option('--consul-token <token>', 'token for the Consul backend (or env CONSUL_HTTP_TOKEN)')
    .option('--waive <protection>', 'start a non-dev agent without it: gossip_key, acl_token or ca_files (repeatable; a warning at every start)', collect, [])
    .option('--dns-port <port>', 'DNS port, UDP and TCP, on the --client address (default: 8600; 0 picks a free one; -1 turns DNS off)')
    .option('--peer-port <port>', 'the peer endpoint on the --bind address: mTLS between agents, for the pool-wide view (default: 0, a free port advertised to the pool; -1 turns it off)')
    .option('--metrics-port <port>', 'a read-only Prometheus listener (GET /metrics, plain HTTP) for scrapers (default: off; 0 picks a free one)')
    .option('--metrics-addr <addr>', 'the metrics listener\'s address (default: the --client address), e.g. the node IP for a cluster\'s Prometheus')
    .option('--dns-addr <addr>', 'DNS address (default: the --client address), e.g. the node IP for pods on Kubernetes')
    .option('--recursor <addr>', 'forward names outside the DNS domain to this resolver, IP[:port] (repeatable)', collect, [])
    .option('--domain <name>', 'DNS domain answered from the catalog (default: consul)')
    .option('--rejoin-after-leave', 'after a graceful leave, still rejoin the previous members on the next start')
    .action(async (f: AgentFlags) => {
      let config;
      const load = () => loadConfig({
        flags: {
          dev: f.dev, node: f.node, datacenter: f.datacenter, data_dir: f.dataDir, bind: f.bind, client: f.client,
          http_port: f.httpPort, log_level: f.logLevel, log_json: f.logJson, acl_token: f.aclToken,
          serf_lan_port: f.serfLanPort, join: f.join, retry_join: f.retryJoin, encrypt: f.encrypt, rejoin_after_leave: f.rejoinAfterLeave,
          consul_addr: f.consulAddr, consul_token: f.consulToken, waive: f.waive?.length ? f.waive : undefined,
          dns_port: f.dnsPort, dns_addr: f.dnsAddr, metrics_port: f.metricsPort, metrics_addr: f.metricsAddr, peer_port: f.peerPort, recursors: f.recursor, domain: f.domain,
        },
        configFiles: f.configFile,
        configDirs: f.configDir,
        env: process.env,
      });
      try {
        config = load();
      } catch (e) {
        if (isNodemeshError(e)) {
          process.stderr.write(`nodemesh: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
      const logTap = new LogTap();
      const log = createLogger(config.logLevel, config.logJson, logTap);
      // Signal handlers go in before anything binds, so a signal during start-up is a clean stop too.
      let agent: RunningAgent | undefined;
      let pending: NodeJS.Signals | undefined;
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          log.warn({ signal: sig }, 'second signal: exiting now');
          process.exit(1);
        }
        if (agent) void agent.stop(`received ${sig}`);
        else pending = sig;
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      // A stray rejection is a bug to log, not a reason to drop every workload's traffic.
      process.on('unhandledRejection', (e) => log.error({ err: (e as Error)?.stack ?? String(e) }, 'unhandled rejection'));
      try {
        agent = await startAgent(config, log, { loadConfig: load, logTap });
      } catch (e) {
        const msg = isNodemeshError(e) ? e.message : (e as Error).stack;
        log.fatal({ code: isNodemeshError(e) ? e.code : undefined }, `agent failed to start: ${msg}`);
        process.stderr.write(`nodemesh: ${msg}\n`);
        process.exit(isNodemeshError(e) && e.status === 2 ? 2 : 1);
      }
      const base = `http://${agent.http.host.includes(':') ? `[${agent.http.host}]` : agent.http.host}:${agent.http.port}`;
      if (process.stdout.isTTY) {
        const cli = existsSync('bin/nodemesh.js') ? './bin/nodemesh.js' : 'nodemesh';
        const addr = base === 'http://127.0.0.1:8500' ? '' : ` --http-addr ${base}`;
        process.stdout.write(`\nnodemesh agent is up: HTTP API on ${base}\n` +
          'Try, in another terminal:\n' +
          `  ${cli} services register --name web --port 8080${addr}\n` +
          `  ${cli} catalog services${addr}\n` +
          `  curl ${base}/v1/health/service/web\n` +
          'Stop with Ctrl-C.\n\n');
      }
      if (pending) void agent.stop(`received ${pending}`);
      // SIGHUP re-reads the config files and applies what can change live (services, CA files, trusted roots).
      const running = agent;
      process.on('SIGHUP', () => {
        running.reloadFromSource().then(() => log.info('config reloaded'), (e: Error) => {
          if (isNodemeshError(e) && e.code === 'CONFIG_INVALID') log.error({ err: e.message }, 'reload refused: the new config is invalid; keeping the running one');
          else log.error({ err: e.message, code: isNodemeshError(e) ? e.code : undefined }, 'reload failed; keeping the running config');
        });
      });
      await agent.stopped;
      process.exit(0);
    });
}

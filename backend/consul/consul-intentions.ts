// Intentions from Consul, kept as a local copy so each connection is decided in-process: the list by blocking query, the no-match default from Consul itself.
//
// Consul 1.8.7's /v1/connect/intentions/match answers without an X-Consul-Index, so it cannot block (probed against
// the real binary); the list endpoint can, and matching it locally uses the same precedence rules.

import { randomUUID } from 'node:crypto';
import { ChangeFeed } from '../../lib/change-feed.js';
import type { DefaultPolicy } from '../../policy/decision.js';
import type { Intention } from '../../model/intention.js';
import type { IntentionSource } from '../../policy/authorizer.js';
import { BlockingWatch } from './blocking-watch.js';
import type { ConsulHttp } from './consul-http.js';

/** How often the default (ACL default policy) is asked again; it changes only with Consul's config. */
const DEFAULT_POLICY_EVERY_MS = 30_000;

export class ConsulIntentions implements IntentionSource {
  readonly feed = new ChangeFeed();
  private lastIndex = 1;
  private all: Intention[] = [];
  private policy: DefaultPolicy;
  private readonly watch: BlockingWatch<Intention[]>;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private resolveDefault!: () => void;
  private readonly firstDefault = new Promise<void>((r) => { this.resolveDefault = r; });

  constructor(private readonly http: ConsulHttp, initialPolicy: DefaultPolicy, private readonly onError: (e: Error) => void, private readonly onOk: () => void) {
    this.policy = initialPolicy;
    this.watch = new BlockingWatch<Intention[]>(http, {
      path: '/connect/intentions',
      onData: (list) => {
        onOk();
        const next = Array.isArray(list) ? list : [];
        if (JSON.stringify(next) === JSON.stringify(this.all)) return;
        this.all = next;
        this.changed();
      },
      onError,
    });
    void this.askDefault();
    this.timer = setInterval(() => void this.askDefault(), DEFAULT_POLICY_EVERY_MS);
    this.timer.unref();
  }

  /** Resolves once the list and the default have both been read. */
  get ready(): Promise<void> {
    return Promise.all([this.watch.first, this.firstDefault]).then(() => undefined);
  }

  get index(): number {
    return this.lastIndex;
  }

  list(): Intention[] {
    return this.all;
  }

  defaultPolicy(): DefaultPolicy {
    return this.policy;
  }

  /**
   * What Consul decides when no intention matches: a check between two names no intention can name exactly.
   * A `* => *` intention answers instead, and rightly so: it matches every pair, so the default never applies.
   */
  private async askDefault(): Promise<void> {
    try {
      const probe = `nodemesh-default-probe-${randomUUID()}`;
      const r = await this.http.get<{ Allowed: boolean }>('/connect/intentions/check', { source: probe, destination: probe });
      this.onOk();
      const policy: DefaultPolicy = r.body.Allowed ? 'allow' : 'deny';
      this.resolveDefault();
      if (!this.stopped && policy !== this.policy) {
        this.policy = policy;
        this.changed();
      }
    } catch (e) {
      if (!this.stopped) this.onError(e as Error);
    }
  }

  private changed(): void {
    this.lastIndex++;
    this.feed.notify();
  }

  poke(): void {
    this.watch.poke();
    void this.askDefault();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.watch.stop();
    this.feed.close();
  }
}

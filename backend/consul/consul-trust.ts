// Trust roots from Consul's CA (/v1/agent/connect/ca/roots, blocking): every listed root, active or not, is trusted, as Consul's proxy does.

import { ChangeFeed } from '../../lib/change-feed.js';
import type { RootsView, TrustSource } from '../../identity/trust-sources.js';
import { BlockingWatch } from './blocking-watch.js';
import type { ConsulHttp } from './consul-http.js';

export class ConsulTrust implements TrustSource {
  readonly feed = new ChangeFeed();
  private lastIndex = 1;
  private view: RootsView = { ActiveRootID: '', TrustDomain: '', Roots: [] };
  private roots: string[] = [];
  private readonly watch: BlockingWatch<RootsView>;

  constructor(http: ConsulHttp, onError: (e: Error) => void, onOk: () => void, onRotate: (activeRootId: string) => void) {
    this.watch = new BlockingWatch<RootsView>(http, {
      path: '/agent/connect/ca/roots',
      onData: (body) => {
        onOk();
        const roots = [...new Set((body.Roots ?? []).map((r) => r.RootCert).filter(Boolean))];
        const rotated = this.view.ActiveRootID !== '' && body.ActiveRootID !== this.view.ActiveRootID;
        if (roots.join() === this.roots.join() && body.ActiveRootID === this.view.ActiveRootID) return;
        this.view = body;
        this.roots = roots;
        this.lastIndex++;
        this.feed.notify();
        if (rotated) onRotate(body.ActiveRootID);
      },
      onError,
    });
  }

  /** Resolves once the roots have been read. */
  get ready(): Promise<void> {
    return this.watch.first;
  }

  get index(): number {
    return this.lastIndex;
  }

  get trustDomain(): string {
    return this.view.TrustDomain;
  }

  pems(): string[] {
    return this.roots;
  }

  rootsView(): RootsView {
    return this.view;
  }

  poke(): void {
    this.watch.poke();
  }

  stop(): void {
    this.watch.stop();
    this.feed.close();
  }
}

// Outlier detection (passive health): an instance that fails several times in a row (5xx or no connection) is ejected for a back-off period that grows with each ejection.

/** Consecutive failures before an ejection (Envoy's and Consul's passive_health_check default). */
const MAX_FAILURES = 5;
const BASE_EJECTION_MS = 30_000;
const MAX_EJECTION_MS = 300_000;
/** Never eject more than this share of a target's instances: some traffic must still flow. */
const MAX_EJECTED_SHARE = 0.5;

interface State { failures: number; ejections: number; until: number }

export class OutlierDetector {
  private readonly state = new Map<string, State>();

  constructor(private readonly onEject?: (key: string, forMs: number) => void) {}

  success(key: string): void {
    const s = this.state.get(key);
    if (s) s.failures = 0;
  }

  /** A 5xx or a failed connection; `peers` is how many instances the target has now (for the ejection cap). */
  failure(key: string, peers: number, ejectedNow: number): void {
    let s = this.state.get(key);
    if (!s) this.state.set(key, (s = { failures: 0, ejections: 0, until: 0 }));
    s.failures++;
    if (s.failures < MAX_FAILURES || s.until > Date.now()) return;
    if (ejectedNow + 1 > Math.max(1, Math.floor(peers * MAX_EJECTED_SHARE))) return;
    s.failures = 0;
    s.ejections++;
    const forMs = Math.min(BASE_EJECTION_MS * s.ejections, MAX_EJECTION_MS);
    s.until = Date.now() + forMs;
    this.onEject?.(key, forMs);
  }

  ejected(key: string): boolean {
    return (this.state.get(key)?.until ?? 0) > Date.now();
  }
}

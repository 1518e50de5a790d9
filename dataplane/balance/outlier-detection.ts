// Outlier detection (passive health): an instance that fails several times in a row (5xx or no connection) is ejected for a back-off period that grows with each ejection.

const MAX_EJECTION_MS = 300_000;

/** Consecutive failures before an ejection (default 5, Envoy's and Consul's passive_health_check default) and the first back-off. */
export interface OutlierSettings { maxFailures: number; baseEjectionMs: number; disabled: boolean }
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
  failure(key: string, peers: number, ejectedNow: number, settings: OutlierSettings): void {
    if (settings.disabled) return;
    let s = this.state.get(key);
    if (!s) this.state.set(key, (s = { failures: 0, ejections: 0, until: 0 }));
    s.failures++;
    if (s.failures < settings.maxFailures || s.until > Date.now()) return;
    if (ejectedNow + 1 > Math.max(1, Math.floor(peers * MAX_EJECTED_SHARE))) return;
    s.failures = 0;
    s.ejections++;
    const forMs = Math.min(settings.baseEjectionMs * s.ejections, MAX_EJECTION_MS);
    s.until = Date.now() + forMs;
    this.onEject?.(key, forMs);
  }

  ejected(key: string): boolean {
    return (this.state.get(key)?.until ?? 0) > Date.now();
  }
}

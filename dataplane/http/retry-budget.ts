// A retry budget (as Finagle's and Linkerd's): each request deposits a fifth of a retry, a floor of 10 retries a second refills, each retry withdraws one — so retries never multiply load, whatever fails.

const RETRY_RATIO = 0.2;
const MIN_PER_SECOND = 10;
/** Deposits older than this are gone: a burst of requests long ago does not pay for retries now. */
const CAP = RETRY_RATIO * 500 + MIN_PER_SECOND * 10;

export class RetryBudget {
  private tokens = CAP / 2;
  private last = Date.now();

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(CAP, this.tokens + ((now - this.last) / 1000) * MIN_PER_SECOND);
    this.last = now;
  }

  /** A request started. */
  deposit(): void {
    this.refill();
    this.tokens = Math.min(CAP, this.tokens + RETRY_RATIO);
  }

  /** Whether a retry may go now (and pays for it). */
  withdraw(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

// When to restart a failed engine, and when to give up so the platform restarts the container (pure).

export const FAILURE_WINDOW_MS = 10 * 60_000;
export const MAX_FAILURES_IN_WINDOW = 5;
export const MAX_BACKOFF_MS = 60_000;

export class RestartPolicy {
  private failures: number[] = [];
  private consecutive = 0;
  private readySince: number | undefined;

  /** The engine became ready: a full window of uptime forgives earlier failures. */
  onReady(now: number): void {
    this.readySince = now;
  }

  /** Records a failure at `now`; returns the delay before the next start, or null to give up. */
  onFailure(now: number): number | null {
    if (this.readySince !== undefined && now - this.readySince >= FAILURE_WINDOW_MS) this.consecutive = 0;
    this.readySince = undefined;
    this.failures = this.failures.filter((t) => now - t < FAILURE_WINDOW_MS);
    this.failures.push(now);
    this.consecutive++;
    if (this.failures.length >= MAX_FAILURES_IN_WINDOW) return null;
    return Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.consecutive - 1));
  }

  get recentFailures(): number {
    return this.failures.length;
  }
}

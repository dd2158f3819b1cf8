/**
 * FailureStreak: a SyncManager's failed cycles in a row, the backoff they
 * call for, and when the streak should warn.
 *
 * Contract: `fail` counts a failure and is true exactly once per streak,
 * when it reaches `warnAfter` (never when that is 0). `succeed` ends the
 * streak and returns how many failed and for how long only when the streak
 * had warned, so a recovery is told exactly when a warning was. `backoff`
 * (and `backoffDelay`) is min(max, initial * multiplier^(failures-1)) with
 * +-jitter.
 */
import type { RetryOptions } from "./sync-options.js";

export class FailureStreak {
  failures = 0;
  /** Epoch ms of the streak's first failure. */
  since = 0;
  private warned = false;

  constructor(readonly warnAfter: number) {}

  fail(now: number): boolean {
    if (this.failures++ === 0) this.since = now;
    if (this.warnAfter === 0 || this.failures !== this.warnAfter) return false;
    this.warned = true;
    return true;
  }

  succeed(now: number): { failures: number; downMs: number } | null {
    const ended = this.warned ? { failures: this.failures, downMs: now - this.since } : null;
    this.failures = 0;
    this.warned = false;
    return ended;
  }

  backoff(retry: Required<RetryOptions>): number {
    return backoffDelay(retry, this.failures);
  }
}

/** The pause after `failures` failures in a row, for a caller that retries what the loop does not (a first handshake). */
export function backoffDelay(retry: Required<RetryOptions>, failures: number): number {
  const { initialMs, maxMs, multiplier, jitter } = retry;
  const base = Math.min(maxMs, initialMs * multiplier ** Math.max(0, failures - 1));
  return Math.max(0, Math.round(base * (1 + jitter * (2 * Math.random() - 1))));
}

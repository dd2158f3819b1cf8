/**
 * FailureStreak: a SyncManager's failed cycles in a row, the backoff they
 * call for, and the warning and recovery it tells.
 *
 * Contract: `fail` counts a failure and is true exactly once per streak,
 * when it reaches `warnAfter` (never when that is 0); `warn` then logs the
 * warning and tells `onWarning`. `succeed` ends the streak, and only when
 * the streak had warned logs the recovery and tells `onRecovered` how many
 * failed and for how long, so a recovery is told exactly when a warning
 * was. `backoff` (and `backoffDelay`) is src/backoff.ts's curve with the
 * retry options' names: initialMs × multiplier^(failures-1), at most maxMs,
 * ± jitter.
 */
import { exponentialDelay } from "../backoff.js";
import type { RetryOptions, SyncLogger } from "./sync-options.js";

export interface StreakReports {
  /** Whom the manager syncs with, for the log lines. */
  peer: string;
  logger: SyncLogger;
  onWarning: (error: Error, failures: number, since: number) => void;
  onRecovered: (failures: number, downMs: number) => void;
}

export class FailureStreak {
  failures = 0;
  /** Epoch ms of the streak's first failure. */
  since = 0;
  private warned = false;

  constructor(
    readonly warnAfter: number,
    private readonly reports: StreakReports,
  ) {}

  fail(now: number): boolean {
    if (this.failures++ === 0) this.since = now;
    if (this.warnAfter === 0 || this.failures !== this.warnAfter) return false;
    this.warned = true;
    return true;
  }

  /** The streak has just reached `warnAfter` (`fail` said so). */
  warn(error: Error): void {
    const { peer, logger } = this.reports;
    logger.warn(
      { peer, failures: this.failures, since: new Date(this.since).toISOString(), error: error.message },
      `sync with ${peer} has failed ${this.failures} times in a row: ${error.message}`,
    );
    this.reports.onWarning(error, this.failures, this.since);
  }

  succeed(now: number): void {
    const { failures, warned } = this;
    this.failures = 0;
    this.warned = false;
    if (!warned) return;
    const { peer, logger } = this.reports;
    const downMs = now - this.since;
    logger.info(
      { peer, failures, downMs },
      `sync with ${peer} recovered after ${failures} failed cycles over ${Math.round(downMs / 1000)} s`,
    );
    this.reports.onRecovered(failures, downMs);
  }

  backoff(retry: Required<RetryOptions>): number {
    return backoffDelay(retry, this.failures);
  }
}

/** The pause after `failures` failures in a row, for a caller that retries what the loop does not (a first handshake). */
export function backoffDelay(retry: Required<RetryOptions>, failures: number): number {
  const { initialMs, maxMs, multiplier, jitter } = retry;
  return exponentialDelay(failures - 1, { baseMs: initialMs, maxMs, factor: multiplier, jitter });
}

/**
 * Backoff: how long to wait before a retry — exponential, capped, and spread
 * at random so that callers that failed together do not retry together.
 *
 * Contract: `exponentialDelay(n, curve)` is min(maxMs, baseMs × factor^n),
 * n being the retries already made (0 before the first), then moved by up to
 * ± jitter × itself at random, rounded to a whole ms and never below 0.
 * factor is 2, maxMs unbounded and jitter 0 unless given. This is the one
 * formula: the queue's job retries, the outbox, a SyncManager's failed
 * cycles, the store's busy retries, the HTTP transport and the mesh each keep
 * their own option names and defaults and call it.
 */

export interface BackoffCurve {
  /** The first wait, ms. */
  baseMs: number;
  /** The longest wait before jitter, ms (default: no cap). */
  maxMs?: number;
  /** Growth per retry (default 2). */
  factor?: number;
  /** ± this fraction of the wait at random, 0 to 1 (default 0). */
  jitter?: number;
}

export function exponentialDelay(n: number, curve: BackoffCurve, random: () => number = Math.random): number {
  const { baseMs, maxMs = Number.POSITIVE_INFINITY, factor = 2, jitter = 0 } = curve;
  // baseMs 0 stays 0 however many retries (0 × Infinity would be NaN).
  const raw = baseMs === 0 ? 0 : Math.min(maxMs, baseMs * factor ** Math.max(0, n));
  if (jitter === 0) return Math.round(raw);
  const spread = raw * jitter;
  return Math.max(0, Math.round(raw - spread + random() * 2 * spread));
}

/**
 * SyncManager's options, status and results, and `syncSettings`, which
 * checks the options.
 *
 * Contract: `syncSettings` refuses every bad option with an
 * InvalidArgumentError naming it, before anything runs, and fills the
 * defaults: push and pull intervals default to `intervalMs` (5 s), a warning
 * after 5 failed cycles in a row, a silent logger, buckets from the replica's
 * tracked tables (or "default").
 */
import type { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Replica } from "../replica/replica.js";
import { DEFAULT_BUCKET } from "../replica/track.js";
import { checkInteger, checkObject, checkPositive } from "../validate.js";
import { DEFAULT_LIMITS } from "./protocol.js";

export type SyncDirection = "push" | "pull" | "both";

export interface RetryOptions {
  /** First delay after a failure, ms (default 1000). */
  initialMs?: number;
  /** Longest delay, ms (default 60 000). */
  maxMs?: number;
  /** Growth per consecutive failure (default 2). */
  multiplier?: number;
  /** +- this fraction of the delay at random (default 0.2). */
  jitter?: number;
}

export interface SyncManagerOptions {
  direction?: SyncDirection;
  /** Changes per batch (default 1000; the hub may lower it). */
  batchSize?: number;
  /** Buckets to sync (default: every bucket this replica tracks, or "default"). */
  buckets?: string[];
  /** Pause between cycles of the background loop, ms (default 5000): both legs' unless set apart. */
  intervalMs?: number;
  /** Pause between pushes of the background loop, ms (default `intervalMs`). */
  pushIntervalMs?: number;
  /** Pause between pulls of the background loop, ms (default `intervalMs`); a live notice pulls at once. */
  pullIntervalMs?: number;
  retry?: RetryOptions;
  /** Warn (logger and "warning" event) after this many failed cycles in a row, once per streak (default 5; 0: never). */
  warnAfterFailures?: number;
  /** Where the warning and the recovery are logged (default: nowhere; the events still fire). */
  logger?: SyncLogger;
  /** Where cursors are kept (default: a CursorStore on the replica's store). */
  cursors?: CursorStore;
}

export type SyncLogger = Pick<Logger, "warn" | "info">;

export type SyncState = "idle" | "syncing" | "error";

export interface SyncStatus {
  state: SyncState;
  /** The last failure's message while state is "error". */
  message?: string;
  /** Epoch ms of the last cycle that succeeded. */
  lastSuccessAt?: number;
  /** Consecutive failed cycles. */
  failures: number;
  /** Epoch ms the background loop will try next, when it is running. */
  nextAt?: number;
}

export interface CycleResult {
  pushed: number;
  pulled: number;
  /** Pulled changes that won at least one entry here. */
  applied: number;
  durationMs: number;
}

/** Where a leg of an initial sync stands after a batch; cursors are sequence numbers. */
export interface SyncPosition {
  direction: "push" | "pull";
  /** The leg's cursor when it started, and after this batch. */
  start: string;
  cursor: string;
  /**
   * The last sequence number of the log the leg reads when it started: this
   * replica's for push, the hub's for pull (when the hub says; see
   * capability "head"). The leg ends at or before it, unless writes go on.
   */
  head?: string;
}

export interface InitialSyncOptions {
  /** After every batch: its size, the changes moved so far, whether more are waiting, and where the leg stands. */
  onProgress?: (batchSize: number, total: number, hasMore: boolean, position: SyncPosition) => void;
}

export interface SyncSettings {
  direction: SyncDirection;
  batchSize: number;
  buckets: string[];
  intervalMs: number;
  pushIntervalMs: number;
  pullIntervalMs: number;
  retry: Required<RetryOptions>;
  warnAfterFailures: number;
  logger: SyncLogger;
}

const RETRY_DEFAULTS: Required<RetryOptions> = { initialMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.2 };
const NOOP = () => {};
const SILENT = { warn: NOOP, info: NOOP } as unknown as SyncLogger;

export function syncSettings(replica: Replica, options: SyncManagerOptions): SyncSettings {
  checkObject("options", options);
  const direction = options.direction ?? "both";
  if (!["push", "pull", "both"].includes(direction)) {
    throw new InvalidArgumentError(
      "direction",
      `must be push, pull or both, got ${JSON.stringify(direction)}`,
    );
  }
  const intervalMs = checkPositive("intervalMs", options.intervalMs ?? 5000);
  // 0: never warn.
  const warnAfterFailures = checkInteger("warnAfterFailures", options.warnAfterFailures ?? 5, 0);
  const logger = options.logger ?? SILENT;
  if (
    typeof logger !== "object" ||
    logger === null ||
    typeof logger.warn !== "function" ||
    typeof logger.info !== "function"
  )
    throw new InvalidArgumentError("logger", "must have warn and info methods");
  const retry = { ...RETRY_DEFAULTS, ...options.retry };
  checkPositive("retry.initialMs", retry.initialMs);
  checkPositive("retry.maxMs", retry.maxMs);
  if (!(retry.multiplier >= 1)) throw new InvalidArgumentError("retry.multiplier", "must be >= 1");
  if (!(retry.jitter >= 0 && retry.jitter < 1))
    throw new InvalidArgumentError("retry.jitter", "must be in [0, 1)");
  const buckets = options.buckets ?? [...new Set(replica.tables().map((t) => t.bucket))].sort();
  if (!Array.isArray(buckets) || buckets.some((b) => typeof b !== "string" || b.trim() === "")) {
    throw new InvalidArgumentError("buckets", "must be an array of bucket names");
  }
  return {
    direction,
    batchSize: checkPositive("batchSize", options.batchSize ?? DEFAULT_LIMITS.maxRows),
    buckets: buckets.length ? [...new Set(buckets)].sort() : [DEFAULT_BUCKET],
    intervalMs,
    pushIntervalMs: checkPositive("pushIntervalMs", options.pushIntervalMs ?? intervalMs),
    pullIntervalMs: checkPositive("pullIntervalMs", options.pullIntervalMs ?? intervalMs),
    retry,
    warnAfterFailures,
    logger,
  };
}

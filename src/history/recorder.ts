/**
 * Recorder: what the daemon keeps in its history (the series) and the wiring
 * from the parts that see it happen to the Rollups that count it.
 *
 * Contract: `startHistory` listens to a Worker ("completed", "failed": one
 * count and two durations per attempt, by job type) and a Hub ("transfer":
 * changes pushed to and pulled from this hub), and takes SyncBucket cycles
 * through `synced` (changes this daemon pushed and pulled as a client, and the
 * cycle's time, by peer). It flushes every `flushIntervalMs` (default a
 * minute) and once more at `stop`, which unhooks everything first, so call it
 * after the worker stopped (its last outcomes are counted) and before the
 * store closes. A failed flush is logged and retried at the next tick; it
 * never throws into the daemon. Only this process's work is counted: jobs run
 * by another program's worker on the same file are not.
 */
import type { Logger } from "../log.js";
import type { Job } from "../queue/types.js";
import type { Worker } from "../queue/worker.js";
import type { Store } from "../store.js";
import { isBusy } from "../store.js";
import type { CycleResult } from "../sync/sync-options.js";
import { MINUTE_MS, Rollups, type RollupsOptions } from "./rollups.js";

export type SeriesKind = "count" | "latency";

/** Every series the daemon records: its kind, what its label is, and how the console titles it. */
export const SERIES = {
  "jobs.completed": { kind: "count", label: "job type", title: "Jobs completed" },
  "jobs.failed": { kind: "count", label: "job type", title: "Job attempts failed" },
  "jobs.wait": { kind: "latency", label: "job type", title: "Job wait, claimed − due (ms)" },
  "jobs.run": { kind: "latency", label: "job type", title: "Job run time (ms)" },
  "changes.pushed": { kind: "count", label: "side", title: "Changes pushed" },
  "changes.pulled": { kind: "count", label: "side", title: "Changes pulled" },
  "sync.cycle": { kind: "latency", label: "peer", title: "Sync cycle time (ms)" },
} as const satisfies Record<string, { kind: SeriesKind; label: string; title: string }>;

export type SeriesName = keyof typeof SERIES;
export const SERIES_NAMES = Object.keys(SERIES) as SeriesName[];

/** The labels of changes.pushed and changes.pulled: received by this hub, or sent by its SyncBucket jobs. */
export const HUB_SIDE = "hub";
export const SYNC_SIDE = "sync";

/**
 * What the recorder hears from a hub: its "transfer" events. Hub is one; an
 * interface, so that history does not import the hub, whose routes serve it.
 */
export interface TransferEvents {
  on(event: "transfer", listener: (direction: "push" | "pull", changes: number) => void): unknown;
  off(event: "transfer", listener: (direction: "push" | "pull", changes: number) => void): unknown;
}

export interface HistoryOptions extends RollupsOptions {
  store: Store;
  worker?: Worker;
  hub?: TransferEvents;
  logger: Logger;
  /** How often what was gathered is written, ms (default a minute). */
  flushIntervalMs?: number;
}

export interface History {
  readonly rollups: Rollups;
  /** A SyncBucket cycle against `peer` that succeeded. */
  synced(peer: string, result: CycleResult): void;
  /** Unhooks, stops the timer, and flushes what is left. */
  stop(): void;
}

export function startHistory(options: HistoryOptions): History {
  const { worker, hub, logger } = options;
  const rollups = new Rollups(options.store, options);
  // startedAt is when the job was claimed for this attempt (the queue's clock), runAt when it
  // became due; claimed + run time is when it ended, near enough for a minute, without a clock read.
  const attempt = (series: "jobs.completed" | "jobs.failed", job: Job, runMs: number) => {
    const claimed = job.startedAt;
    const at = claimed === null ? undefined : claimed + runMs;
    rollups.add(series, job.type, 1, at);
    rollups.observe("jobs.run", job.type, runMs, at);
    if (claimed !== null) rollups.observe("jobs.wait", job.type, claimed - job.runAt, at);
  };
  const completed = (job: Job, runMs: number) => attempt("jobs.completed", job, runMs);
  const failed = (job: Job, _err: Error, _final: boolean, runMs: number) =>
    attempt("jobs.failed", job, runMs);
  const transfer = (direction: "push" | "pull", n: number) =>
    rollups.add(direction === "push" ? "changes.pushed" : "changes.pulled", HUB_SIDE, n);
  worker?.on("completed", completed);
  worker?.on("failed", failed);
  hub?.on("transfer", transfer);

  const flush = () => {
    try {
      rollups.flush();
    } catch (err) {
      if (isBusy(err)) logger.debug({ err }, "history not written: the database is locked; next minute");
      else logger.error({ err }, "history not written; retrying next minute");
    }
  };
  const timer = setInterval(flush, options.flushIntervalMs ?? MINUTE_MS);
  timer.unref();
  let stopped = false;
  return {
    rollups,
    synced(peer, result) {
      if (stopped) return;
      if (result.pushed > 0) rollups.add("changes.pushed", SYNC_SIDE, result.pushed);
      if (result.pulled > 0) rollups.add("changes.pulled", SYNC_SIDE, result.pulled);
      rollups.observe("sync.cycle", peer, result.durationMs);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      worker?.off("completed", completed);
      worker?.off("failed", failed);
      hub?.off("transfer", transfer);
      flush();
    },
  };
}

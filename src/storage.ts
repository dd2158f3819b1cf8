/**
 * Storage: the pages of a Store's file — how big it is, how much of it is free
 * — and giving free pages back to the file system.
 *
 * Contract: `storageStats` reads only (read-only stores included). SQLite
 * keeps the pages deleted rows leave on a freelist and reuses them; the file
 * only shrinks when they are moved to its end and cut off. A Store creates new
 * files with auto_vacuum = INCREMENTAL, which makes that possible in small
 * pieces: `reclaimFreePages` runs `PRAGMA incremental_vacuum(n)` in steps of at
 * most `pagesPerStep` pages, each its own short IMMEDIATE transaction, halving
 * the step when one took longer than `maxStepMs`, and yields `pauseMs` between
 * steps so other connections (and the caller's event loop) get the write lock
 * in between; another program's lock ends the run (`stoppedBy: "busy"`), as
 * does the caller's signal. In WAL mode the file itself shrinks at the next
 * checkpoint, which it runs at the end (PASSIVE: it never waits for readers).
 *
 * auto_vacuum can only change on an empty file or by rewriting the whole file
 * (VACUUM), which locks it for as long as that takes and needs as much free
 * disk again: a file created by an older tidewire or by another program
 * (auto_vacuum NONE) is never converted behind the operator's back.
 * `reclaimFreePages` does nothing on it (`stoppedBy: "auto_vacuum"`), and
 * `convertToIncremental` — `tidewire vacuum <db> --full` — converts it when
 * the operator chooses to, with the daemon and applications stopped.
 */
import { statSync } from "node:fs";
import { setTimeout as wait } from "node:timers/promises";
import { InvalidArgumentError, StoreError } from "./errors.js";
import { pagesReclaimed } from "./metrics.js";
import { isBusy, type Store } from "./store.js";
import { checkInteger, checkObject } from "./validate.js";

export type AutoVacuumMode = "none" | "full" | "incremental";
const MODES: readonly AutoVacuumMode[] = ["none", "full", "incremental"];

export interface StorageStats {
  pageSize: number;
  /** Pages in the database, free ones included (pageCount × pageSize is its size). */
  pageCount: number;
  /** Pages on the freelist: reused by later writes, returned to the file system only by a vacuum. */
  freePages: number;
  sizeBytes: number;
  freeBytes: number;
  /** The -wal file beside it (0 without one); emptied by a TRUNCATE checkpoint. */
  walBytes: number;
  /** Only "incremental" lets `reclaimFreePages` shrink the file. */
  autoVacuum: AutoVacuumMode;
}

export function storageStats(store: Store): StorageStats {
  const pragma = (name: string) => store.db.pragma(name, { simple: true }) as number;
  const pageSize = pragma("page_size");
  const pageCount = pragma("page_count");
  const freePages = pragma("freelist_count");
  return {
    pageSize,
    pageCount,
    freePages,
    sizeBytes: pageSize * pageCount,
    freeBytes: pageSize * freePages,
    walBytes: store.path === ":memory:" ? 0 : fileBytes(`${store.path}-wal`),
    autoVacuum: MODES[pragma("auto_vacuum")] ?? "none",
  };
}

export interface ReclaimOptions {
  /** Pages freed by one step at most (default 512: 2 MiB of 4 KiB pages). */
  pagesPerStep?: number;
  /** A step that took longer halves the next one (default 50 ms). */
  maxStepMs?: number;
  /** Pause between steps, ms, when other connections may take the lock (default 5). */
  pauseMs?: number;
  /** Steps at most in this run (default: until no page is free). */
  maxSteps?: number;
  /** Stops the run between two steps. */
  signal?: AbortSignal;
}

export interface ReclaimResult {
  steps: number;
  pagesFreed: number;
  /** The longest step, ms: how long the write lock was held at once. */
  longestStepMs: number;
  before: StorageStats;
  after: StorageStats;
  /** Why it stopped before the freelist was empty, or null when it is. */
  stoppedBy: "auto_vacuum" | "busy" | "signal" | "maxSteps" | null;
}

export async function reclaimFreePages(store: Store, options: ReclaimOptions = {}): Promise<ReclaimResult> {
  const o = normalizeReclaim(options);
  if (store.readonly) throw new StoreError(`${store.path} is open read-only; pages cannot be reclaimed`);
  const before = storageStats(store);
  let steps = 0;
  let pagesFreed = 0;
  let longestStepMs = 0;
  let step = o.pagesPerStep;
  let stoppedBy: ReclaimResult["stoppedBy"] = null;
  if (before.autoVacuum !== "incremental") stoppedBy = "auto_vacuum";
  while (stoppedBy === null) {
    const free = freelist(store);
    if (free === 0) break;
    if (o.signal?.aborted) stoppedBy = "signal";
    else if (steps >= o.maxSteps) stoppedBy = "maxSteps";
    else {
      const started = performance.now();
      try {
        // Not store.write: its retry sleeps the thread; a held lock ends this run instead.
        store.db
          .transaction(() => store.db.pragma(`incremental_vacuum(${Math.min(step, free)})`))
          .immediate();
      } catch (err) {
        if (!isBusy(err)) throw err;
        stoppedBy = "busy";
        break;
      }
      const took = performance.now() - started;
      const freed = free - freelist(store);
      steps++;
      pagesFreed += freed;
      pagesReclaimed.inc(freed);
      longestStepMs = Math.max(longestStepMs, took);
      if (took > o.maxStepMs) step = Math.max(1, Math.floor(step / 2));
      await wait(o.pauseMs);
    }
  }
  if (pagesFreed > 0) store.checkpoint("PASSIVE");
  return { steps, pagesFreed, longestStepMs, before, after: storageStats(store), stoppedBy };
}

/**
 * Sets auto_vacuum = INCREMENTAL on a file that has another mode and rewrites
 * it (VACUUM), which also returns every free page. It holds the write lock
 * throughout and needs free disk as large as the file: for an operator to run
 * with nothing else using the file. Returns the stats before and after.
 */
export function convertToIncremental(store: Store): { before: StorageStats; after: StorageStats } {
  if (store.readonly) throw new StoreError(`${store.path} is open read-only; it cannot be rewritten`);
  const before = storageStats(store);
  store.db.pragma("auto_vacuum = INCREMENTAL");
  store.retrying(() => store.db.exec("VACUUM"));
  store.checkpoint("TRUNCATE");
  return { before, after: storageStats(store) };
}

function freelist(store: Store): number {
  return store.db.pragma("freelist_count", { simple: true }) as number;
}

function normalizeReclaim(o: ReclaimOptions): Required<Omit<ReclaimOptions, "signal">> & {
  signal?: AbortSignal;
} {
  checkObject("options", o);
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal))
    throw new InvalidArgumentError("signal", "must be an AbortSignal");
  return {
    pagesPerStep: o.pagesPerStep === undefined ? 512 : checkInteger("pagesPerStep", o.pagesPerStep, 1),
    maxStepMs: o.maxStepMs === undefined ? 50 : checkInteger("maxStepMs", o.maxStepMs, 1),
    pauseMs: o.pauseMs === undefined ? 5 : checkInteger("pauseMs", o.pauseMs, 0),
    maxSteps: o.maxSteps === undefined ? Number.POSITIVE_INFINITY : checkInteger("maxSteps", o.maxSteps, 1),
    signal: o.signal,
  };
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * Report: what a database holds as a replica, read without opening a Replica
 * — the replica's answer for `tidewire status`, the hub's GET /v1/status and
 * the CLI's checks of a file before it opens one.
 *
 * Contract: reads only, on any Store, read-only ones included: staged writes
 * are counted, not ingested, and nothing is migrated or given a clock, so a
 * file that is not (yet) a replica reads as such (`readReplica` null, no
 * tables, no lag). Capture a schema change broke is reported, not restored.
 */
import type { Store } from "../store.js";
import { Catalog } from "./catalog.js";
import { type ConflictCounts, Conflicts } from "./conflicts.js";
import { type CaptureStatus, inspectCapture } from "./evolve.js";
import { formatHlc, hlcMillis } from "./hlc.js";
import { COUNT_STAGED } from "./ingest.js";
import { type Lag, type LagQuery, readLag } from "./lag.js";
import { ChangeLog, type LogStats } from "./log.js";
import { type BucketCount, bucketCounts, type TableCount, tableCounts } from "./table-counts.js";
import { describeTracked, type TrackedTableInfo } from "./track.js";

export interface ReplicaReport {
  nodeId: string | null;
  clock: { hlc: string; time: string } | null;
  /** Bucket -> its tracked tables. */
  buckets: Record<string, string[]>;
  tables: TrackedTableInfo[];
  capture: CaptureStatus[];
  log: LogStats & { staged: number };
  counts: { tables: TableCount[]; buckets: BucketCount[] };
  /** The lag of each reader asked for, by key. */
  readerLag: Record<string, Lag | null>;
}

/** Whether the file has a replica's clock and log tables (it may still have no node id). */
export function isReplicaFile(store: Store): boolean {
  return store.hasTable("tw_clock") && store.hasTable("tw_log");
}

/** Whether the file is a replica: its clock has been given a node id. */
export function hasClock(store: Store): boolean {
  return store.hasTable("tw_clock") && store.db.prepare("SELECT 1 FROM tw_clock").get() !== undefined;
}

/** The tables the file tracks or relays, by name; null for a file that is not a replica. */
export function trackedTableNames(store: Store): string[] | null {
  if (!store.hasTable("tw_tracked")) return null;
  return store.db.prepare("SELECT name FROM tw_tracked ORDER BY name").pluck().all() as string[];
}

/**
 * The replica's part of a status, with the lag of `readers`; null for a file
 * that is not a replica. One without a clock row yet has a null node id and clock.
 */
export function readReplica(store: Store, readers: LagQuery[] = []): ReplicaReport | null {
  if (!isReplicaFile(store)) return null;
  const row = store.db.prepare("SELECT node, hlc FROM tw_clock WHERE id = 0").safeIntegers(true).get() as
    | { node: string; hlc: bigint }
    | undefined;
  const catalog = new Catalog(store.db);
  const tables = catalog.list().map(describeTracked);
  const buckets: Record<string, string[]> = {};
  for (const t of tables) {
    const list = buckets[t.bucket] ?? [];
    list.push(t.table);
    buckets[t.bucket] = list;
  }
  // Read-only: staged writes are counted, not ingested (any replica method does that).
  const staged = store.hasTable("tw_pending") ? (store.db.prepare(COUNT_STAGED).pluck().get() as number) : 0;
  const counted = tableCounts(store.db, catalog);
  return {
    nodeId: row?.node ?? null,
    clock: row ? { hlc: formatHlc(row.hlc), time: new Date(hlcMillis(row.hlc)).toISOString() } : null,
    buckets,
    tables,
    capture: catalog.list().map((t) => inspectCapture(store, t, store.path)),
    log: { ...new ChangeLog(store.db, catalog).stats(), staged },
    counts: { tables: counted, buckets: bucketCounts(counted) },
    readerLag: readers.length > 0 ? Object.fromEntries(readLag(store.db, readers)) : {},
  };
}

/** The lag of each reader of the file's log, by key; empty for a file that has no log. */
export function readersLag(store: Store, readers: LagQuery[]): Map<string, Lag | null> {
  return readers.length > 0 && store.hasTable("tw_log") ? readLag(store.db, readers) : new Map();
}

/** What conflict rules overrode and what waits in quarantine; null before migration 9. */
export function conflictCounts(store: Store): ConflictCounts | null {
  return store.hasTable("tw_conflicts") ? new Conflicts(store.db).counts() : null;
}

/** The file's conflicts, to read; null for a file from before migration 9 (or not a replica). */
export function conflictsOf(store: Store): Conflicts | null {
  return store.hasTable("tw_conflicts") ? new Conflicts(store.db) : null;
}

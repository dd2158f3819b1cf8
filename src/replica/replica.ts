/**
 * Replica: a Store with a node id, a hybrid logical clock and tracked tables.
 *
 * Contract: `Replica.open(path, { nodeId })` opens (or creates) the database
 * and gives it a node id the first time, kept for good. `track` captures a
 * table's writes from any SQLite client; `changesSince` pages the compacted
 * log out; `apply` merges a batch from other replicas, all or nothing. A
 * replica opened with `open` owns its store and closes it; one made with
 * `Replica.attach(store)` leaves the store to its owner. A relay (`relay:
 * true`, the hub) also accepts changes for tables it does not track: it keeps
 * their log, merged like any other, and serves it onward by bucket. Capture
 * stages writes (triggers.ts); every method that reads or compares against
 * the log ingests them first (ingest.ts), in its own transaction, and so
 * does a timer (`ingestIntervalMs`) and `close`, so the staged rows stay few
 * when nobody reads.
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { checkNodeId } from "../node-id.js";
import { openStore, type Store, type StoreOptions } from "../store.js";
import { checkDuration, checkFlag, checkInteger, checkObject } from "../validate.js";
import { Applier, type ApplyOptions, type ApplyResult } from "./apply.js";
import { Catalog } from "./catalog.js";
import type { ChangeSet } from "./change.js";
import { type ClockResetOptions, type ClockResetResult, resetClock } from "./clock-reset.js";
import {
  type Conflict,
  type ConflictCounts,
  type ListOptions as ConflictListOptions,
  isQuarantine,
  type QuarantinedChange,
} from "./conflicts.js";
import { type CaptureStatus, inspectCapture, SchemaWatch } from "./evolve.js";
import { Clock, DEFAULT_MAX_DRIFT_MS, formatHlc } from "./hlc.js";
import { Ingester } from "./ingest.js";
import { ChangeLog, type ChangesSinceOptions, type LogStats } from "./log.js";
import { versionOf } from "./merge.js";
import { RestoreRefusedError, restoreVersion } from "./restore.js";
import { describeTracked, type TrackedTableInfo, Tracker, type TrackOptions } from "./track.js";
import { legacyCaptureTables } from "./triggers.js";

/** A batch touches a tracked table whose capture a schema change broke; the message says what to run. */
export class CaptureBrokenError extends TidewireError {
  constructor(message: string) {
    super(message, "ERR_CAPTURE_BROKEN");
    this.name = "CaptureBrokenError";
  }
}

export interface ReplicaOptions {
  /** This database's node id, the first time it is opened as a replica (default: random). */
  nodeId?: string;
  /** Refuse changes whose clock is further ahead of local time than this (default 60 000). */
  maxDriftMs?: number;
  /**
   * Keep and serve onward the log of tables this database does not track
   * (they must carry their bucket); without it such changes are refused.
   * Tracking such a table later writes its rows into it. Default false.
   */
  relay?: boolean;
  /**
   * Ingest staged writes this often while the replica is open (default 1000
   * ms; 0: only when the log is read). The timer never keeps the process alive.
   */
  ingestIntervalMs?: number;
  /**
   * Staged events per ingest transaction (default 100,000), so a bulk load
   * another program staged holds the write lock a chunk at a time.
   */
  ingestChunk?: number;
  /** Options for the Store that `open` creates. */
  store?: StoreOptions;
}

export interface ReplicaStats extends LogStats {
  /** Rows capture staged that no ingest has moved into the log yet (`stats` ingests first). */
  staged: number;
}

const DEFAULT_INGEST_INTERVAL_MS = 1000;

export class Replica {
  readonly store: Store;
  readonly nodeId: string;
  private readonly clock: Clock;
  private readonly catalog: Catalog;
  private readonly log: ChangeLog;
  private readonly tracker: Tracker;
  private readonly applier: Applier;
  private readonly ingester: Ingester;
  private readonly watch: SchemaWatch;
  private readonly timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  private constructor(
    store: Store,
    options: ReplicaOptions,
    private readonly ownsStore: boolean,
  ) {
    this.store = store;
    const maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    this.clock = store.write(() => new Clock(store.db, options.nodeId, maxDriftMs), "replica.clock");
    this.nodeId = this.clock.nodeId;
    this.catalog = new Catalog(store.db);
    this.log = new ChangeLog(store.db, this.catalog);
    this.tracker = new Tracker(store, this.clock, this.catalog, this.log);
    this.applier = new Applier(store, this.clock, this.catalog, this.log, options.relay === true);
    this.ingester = new Ingester(store, this.clock, this.catalog, this.log, options.ingestChunk);
    this.watch = new SchemaWatch(store, this.catalog, this.tracker, () => this.ingester.ingest());
    const every = options.ingestIntervalMs ?? DEFAULT_INGEST_INTERVAL_MS;
    if (every > 0) {
      this.timer = setInterval(() => {
        // A failed ingest (the file busy past every retry) leaves the rows
        // staged: the next tick or read takes them.
        try {
          this.catchUp();
        } catch {}
      }, every);
      this.timer.unref();
    }
    // Direct-capture triggers (before migration 8) still work, logging as they
    // write, and migration 8's name every column: swap them for key-only ones
    // once (their staged events ingested first), which also fingerprints every row.
    for (const name of legacyCaptureTables(store.db)) {
      const t = this.catalog.get(name);
      if (t) this.track(name, { bucket: t.bucket });
    }
    // The owner of an attached store may close it first: stop, with a last
    // ingest, which failing only leaves the rows staged for the next open.
    store.onClose(() => {
      try {
        this.stop();
      } catch {}
    });
  }

  static open(path: string, options: ReplicaOptions = {}): Replica {
    checkOptions(options);
    const store = openStore(path, options.store);
    try {
      return new Replica(store, options, true);
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /** A replica over a store that is already open; `close` leaves the store open. */
  static attach(store: Store, options: ReplicaOptions = {}): Replica {
    checkOptions(options);
    if (store.readonly) throw new InvalidArgumentError("store", "is read-only; a replica writes its clock");
    return new Replica(store, options, false);
  }

  // Triggers are rewritten in the transaction that ingests what the old ones staged.
  track(table: string, options?: TrackOptions): TrackedTableInfo {
    return this.store.write(() => {
      this.catchUp();
      return this.tracker.track(table, options);
    }, "replica.track");
  }

  /** Stops capturing `table` and forgets its log entries; false when it was not tracked. */
  untrack(table: string): boolean {
    return this.store.write(() => {
      this.catchUp();
      return this.tracker.untrack(table);
    }, "replica.track");
  }

  /**
   * Moves the writes capture staged into the log; returns how many events.
   * First restores the capture of any table a schema change touched (evolve.ts).
   */
  ingest(): number {
    return this.catchUp();
  }

  /** How capture of each tracked table stands against its schema (restoring what it can first). */
  captureStatus(): CaptureStatus[] {
    this.catchUp();
    return this.catalog.list().map((t) => inspectCapture(this.store, t));
  }

  /** The tracked tables, by name, as capture follows them after any schema change. */
  tables(): TrackedTableInfo[] {
    this.watch.check();
    return this.catalog.list().map(describeTracked);
  }

  /**
   * The tables whose log this replica keeps without having them (see
   * `relay`), by name: `key` holds one "" per key part, `columns` is empty.
   */
  relayedTables(): TrackedTableInfo[] {
    return this.catalog
      .listAll()
      .filter((t) => t.relayed)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map(describeTracked);
  }

  /** The change log's last sequence number, staged writes logged first; `stats().lastSeq` without the counting. */
  lastSeq(): number {
    this.catchUp();
    return this.log.lastSeq();
  }

  changesSince(cursor: string | number | bigint, options?: ChangesSinceOptions): ChangeSet {
    this.catchUp();
    // A table whose capture is broken has no rows to serve values from: say what to run.
    const buckets = Array.isArray(options?.buckets) ? new Set<unknown>(options.buckets) : null;
    const problem = this.catalog.problemOf(
      this.catalog
        .list()
        .filter((t) => !buckets || buckets.has(t.bucket))
        .map((t) => t.name),
    );
    if (problem !== null) throw new CaptureBrokenError(problem);
    return this.log.since(cursor, options);
  }

  /** Merges a batch from other replicas; `from` names the peer that sent it (see ApplyOptions). */
  apply(changes: unknown, options?: ApplyOptions): ApplyResult {
    // One transaction: local writes are in the log before the batch is compared with it.
    return this.store.write(() => {
      this.catchUp();
      // A change for a table whose capture a schema change broke (the table
      // gone, or no longer trackable) is quarantined by the applier with the
      // problem, which says what to run (Catalog.problem).
      return this.applier.apply(changes, options);
    }, "replica.apply");
  }

  /**
   * What resolution rules overrode here, and the changes kept aside because
   * they cannot be applied here yet, newest first.
   */
  conflicts(options?: ConflictListOptions): { conflicts: Conflict[]; quarantined: QuarantinedChange[] } {
    return this.applier.conflicts.list(options);
  }

  /** One conflict or quarantined change by id, or null. */
  conflict(id: number): Conflict | QuarantinedChange | null {
    checkInteger("id", id, 1);
    return this.applier.conflicts.get(id);
  }

  conflictCounts(): ConflictCounts {
    return this.applier.conflicts.counts();
  }

  /** Tries every quarantined change again; returns how many applied. */
  retryQuarantined(): number {
    return this.store.write(() => {
      this.ingester.ingest();
      return this.applier.retryQuarantined();
    }, "replica.conflict");
  }

  /**
   * Puts back what a conflict overrode, as a local write that syncs like any
   * other (a quarantined change is tried again instead). Refused with a
   * RestoreRefusedError, writing nothing, when the schema refuses the row —
   * usually because the row that won holds its unique value; `replace`
   * deletes such rows first, and records each as a conflict of its own.
   */
  restoreConflict(
    id: number,
    options: { replace?: boolean } = {},
  ): { id: number; restored: boolean; reason?: string } {
    checkInteger("id", id, 1);
    return this.store.write(() => {
      this.ingester.ingest();
      const c = this.applier.conflicts.get(id);
      if (!c) throw new InvalidArgumentError("id", `there is no conflict ${id}`);
      if (isQuarantine(c.kind)) {
        const q = c as QuarantinedChange;
        this.applier.conflicts.release([q.id]);
        const r = this.applier.apply([q.change], q.from ? { from: q.from } : {});
        if (r.quarantined === 0) return { id, restored: true };
        const again = this.applier.conflicts.list({ kinds: ["held", "failed"], limit: 1 }).quarantined[0];
        return { id, restored: false, reason: again?.reason ?? "it still cannot be applied" };
      }
      const conflict = c as Conflict;
      const t = this.catalog.get(conflict.table);
      if (!t)
        throw new RestoreRefusedError(
          `conflict ${id} cannot be restored: table "${conflict.table}" is not tracked here`,
        );
      if (!conflict.lost) throw new RestoreRefusedError(`conflict ${id} kept no version to restore`);
      const displaced = restoreVersion(
        this.store.db,
        t,
        conflict.lost,
        `conflict ${id}`,
        options.replace === true,
      );
      for (const d of displaced) {
        const lost = versionOf(d.parts, d.values);
        this.applier.conflicts.record({
          kind: "unique",
          table: t.name,
          pk: lost.pk,
          hlc: this.now(),
          origin: this.nodeId,
          reason: `deleted to restore conflict ${id} (unique index ${d.index})`,
          lost,
          kept: conflict.lost,
        });
      }
      this.applier.conflicts.markRestored(id);
      return { id, restored: true };
    }, "replica.conflict");
  }

  /** The clock as it stands, staged writes counted: 16 hex digits. */
  now(): string {
    this.catchUp();
    return formatHlc(this.clock.read().hlc);
  }

  /** The log's last sequence number, staged writes ingested: the cursor a reader of everything ends at. */
  head(): string {
    this.catchUp();
    return String(this.clock.read().seq);
  }

  /**
   * Recovers from a clock that ran ahead: re-stamps this node's own changes
   * stamped beyond the drift window and sets the clock back (see clock-reset.ts).
   */
  resetClock(options: ClockResetOptions = {}): ClockResetResult {
    checkObject("options", options);
    const drift = checkDuration("maxDriftMs", options.maxDriftMs ?? this.clock.maxDriftMs);
    const now = checkDuration("now", options.now ?? Date.now());
    return this.store.write(() => {
      this.ingester.ingest();
      return resetClock(this.store.db, this.clock, drift, now);
    }, "replica.clock");
  }

  stats(): ReplicaStats {
    this.catchUp();
    return { ...this.log.stats(), staged: this.ingester.staged() };
  }

  close(): void {
    if (this.closed) return;
    try {
      this.stop();
    } finally {
      if (this.ownsStore) this.store.close();
    }
  }

  private stop(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.catchUp();
  }

  /** Capture restored where a schema change broke it, then the staged writes logged. */
  private catchUp(): number {
    this.watch.check();
    return this.ingester.ingest();
  }
}

function checkOptions(options: ReplicaOptions): void {
  checkObject("options", options);
  if (options.nodeId !== undefined) checkNodeId("nodeId", options.nodeId);
  checkFlag("relay", options.relay);
  if (options.ingestIntervalMs !== undefined) checkDuration("ingestIntervalMs", options.ingestIntervalMs);
  if (options.ingestChunk !== undefined) checkInteger("ingestChunk", options.ingestChunk, 1);
  if (options.maxDriftMs !== undefined) checkDuration("maxDriftMs", options.maxDriftMs);
}

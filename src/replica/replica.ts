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
 * when nobody reads. That rule lives in one place, `caughtUp`: every such
 * method runs its work through it. The replica owns tw_clock, tw_tracked,
 * tw_log, tw_pending, tw_conflicts and tw_renames: other modules ask it (or,
 * reading a file without opening a replica, replica/report.ts).
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";
import type { BusyOperation } from "../metrics.js";
import { openStore, type Store } from "../store.js";
import { checkDuration, checkObject } from "../validate.js";
import { Applier, type ApplyOptions, type ApplyResult } from "./apply.js";
import { Catalog } from "./catalog.js";
import type { ChangeSet } from "./change.js";
import { type ClockResetOptions, type ClockResetResult, resetClock } from "./clock-reset.js";
import type {
  Conflict,
  ConflictCounts,
  ListOptions as ConflictListOptions,
  ConflictReader,
  QuarantinedChange,
} from "./conflicts.js";
import { type CaptureStatus, inspectCapture, SchemaWatch } from "./evolve.js";
import { Clock, DEFAULT_MAX_DRIFT_MS, formatHlc } from "./hlc.js";
import { Ingester } from "./ingest.js";
import { ChangeLog, type ChangesSinceOptions, type LogStats } from "./log.js";
import { checkConflictId, checkOptions, type ReplicaOptions } from "./options.js";
import { type RestoreResult, restoreConflict } from "./restore.js";
import { describeTracked, type TrackedTableInfo, Tracker, type TrackOptions } from "./track.js";
import { legacyCaptureTables } from "./triggers.js";

export type { ReplicaOptions } from "./options.js";

/** A batch touches a tracked table whose capture a schema change broke; the message says what to run. */
export class CaptureBrokenError extends TidewireError {
  constructor(message: string) {
    super(message, "ERR_CAPTURE_BROKEN");
    this.name = "CaptureBrokenError";
  }
}

export interface ReplicaStats extends LogStats {
  /** Rows capture staged that no ingest has moved into the log yet (`stats` ingests first). */
  staged: number;
}

const DEFAULT_INGEST_INTERVAL_MS = 1000;

export class Replica {
  readonly store: Store;
  readonly nodeId: string;
  /** Opened with `relay: true` (see ReplicaOptions): the one relay setting, which a Hub reads. */
  readonly relay: boolean;
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
    this.relay = options.relay === true;
    const maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    this.clock = store.write(() => new Clock(store.db, options.nodeId, maxDriftMs), "replica.clock");
    this.nodeId = this.clock.nodeId;
    this.catalog = new Catalog(store.db);
    this.log = new ChangeLog(store.db, this.catalog);
    this.tracker = new Tracker(store, this.clock, this.catalog, this.log);
    this.applier = new Applier(store, this.clock, this.catalog, this.log, this.relay);
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
    return this.caughtUp(() => this.tracker.track(table, options), "replica.track");
  }

  /** Stops capturing `table` and forgets its log entries; false when it was not tracked. */
  untrack(table: string): boolean {
    return this.caughtUp(() => this.tracker.untrack(table), "replica.track");
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
    return this.caughtUp(() => this.catalog.list().map((t) => inspectCapture(this.store, t)));
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
    return this.caughtUp(() => this.log.lastSeq());
  }

  changesSince(cursor: string | number | bigint, options?: ChangesSinceOptions): ChangeSet {
    return this.caughtUp(() => this.pageOut(cursor, options));
  }

  private pageOut(cursor: string | number | bigint, options?: ChangesSinceOptions): ChangeSet {
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
    // One transaction: local writes are in the log before the batch is compared
    // with it. A change for a table whose capture a schema change broke (the
    // table gone, or no longer trackable) is quarantined by the applier with
    // the problem, which says what to run (Catalog.problem).
    return this.caughtUp(() => this.applier.apply(changes, options), "replica.apply");
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
    checkConflictId(id);
    return this.applier.conflicts.get(id);
  }

  /**
   * The conflicts and the quarantine to read, for a console that pages and
   * filters them; writes go through `restoreConflict` and `retryQuarantined`.
   */
  get conflictLog(): ConflictReader {
    return this.applier.conflicts;
  }

  conflictCounts(): ConflictCounts {
    return this.applier.conflicts.counts();
  }

  /** Tries every quarantined change again; returns how many applied. */
  retryQuarantined(): number {
    return this.caughtUp(() => this.applier.retryQuarantined(), "replica.conflict");
  }

  /**
   * Puts back what a conflict overrode, as a local write that syncs like any
   * other (a quarantined change is tried again instead). Refused with a
   * RestoreRefusedError, writing nothing, when the schema refuses the row —
   * usually because the row that won holds its unique value; `replace`
   * deletes such rows first, and records each as a conflict of its own.
   */
  restoreConflict(id: number, options: { replace?: boolean } = {}): RestoreResult {
    checkConflictId(id);
    const context = {
      db: this.store.db,
      catalog: this.catalog,
      conflicts: this.applier.conflicts,
      nodeId: this.nodeId,
      apply: (changes: unknown[], o: ApplyOptions) => this.applier.apply(changes, o),
      now: () => this.now(),
    };
    return this.caughtUp(() => restoreConflict(context, id, options.replace === true), "replica.conflict");
  }

  /** The clock as it stands, staged writes counted: 16 hex digits. */
  now(): string {
    return this.caughtUp(() => formatHlc(this.clock.read().hlc));
  }

  /** The log's last sequence number, staged writes ingested: the cursor a reader of everything ends at. */
  head(): string {
    return this.caughtUp(() => this.loggedHead());
  }

  /**
   * The log's last sequence number as it stands, staged writes left staged:
   * what a watcher that ingests on its own schedule compares between ticks.
   */
  loggedHead(): string {
    return String(this.clock.read().seq);
  }

  /** The buckets of the tables this replica tracks (not those it only relays), sorted. */
  buckets(): string[] {
    return [...new Set(this.catalog.list().map((t) => t.bucket))].sort();
  }

  /**
   * Recovers from a clock that ran ahead: re-stamps this node's own changes
   * stamped beyond the drift window and sets the clock back (see clock-reset.ts).
   */
  resetClock(options: ClockResetOptions = {}): ClockResetResult {
    checkObject("options", options);
    const drift = checkDuration("maxDriftMs", options.maxDriftMs ?? this.clock.maxDriftMs);
    const now = checkDuration("now", options.now ?? Date.now());
    return this.caughtUp(() => resetClock(this.store.db, this.clock, drift, now), "replica.clock");
  }

  stats(): ReplicaStats {
    return this.caughtUp(() => ({ ...this.log.stats(), staged: this.ingester.staged() }));
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

  /**
   * "Ingest first", in one place: capture restored where a schema change
   * broke it and the staged writes logged, then `fn` — in one write
   * transaction when `op` names the write, so what `fn` compares against
   * the log cannot be staged again in between.
   */
  private caughtUp<T>(fn: () => T, op?: BusyOperation): T {
    if (op === undefined) {
      this.catchUp();
      return fn();
    }
    return this.store.write(() => {
      this.catchUp();
      return fn();
    }, op);
  }

  /** Capture restored where a schema change broke it, then the staged writes logged. */
  private catchUp(): number {
    this.watch.check();
    return this.ingester.ingest();
  }
}

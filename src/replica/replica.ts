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
import { InvalidArgumentError } from "../errors.js";
import { openStore, type Store, type StoreOptions } from "../store.js";
import { Applier, type ApplyOptions, type ApplyResult } from "./apply.js";
import { Catalog } from "./catalog.js";
import { type ClockResetOptions, type ClockResetResult, resetClock } from "./clock-reset.js";
import { Clock, checkNodeId, DEFAULT_MAX_DRIFT_MS, formatHlc } from "./hlc.js";
import { Ingester } from "./ingest.js";
import { ChangeLog, type ChangeSet, type ChangesSinceOptions, type LogStats } from "./log.js";
import { describeTracked, type TrackedTableInfo, Tracker, type TrackOptions } from "./track.js";
import { legacyCaptureTables } from "./triggers.js";

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
  private readonly timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  private constructor(
    store: Store,
    options: ReplicaOptions,
    private readonly ownsStore: boolean,
  ) {
    this.store = store;
    const maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    this.clock = store.write(() => new Clock(store.db, options.nodeId, maxDriftMs));
    this.nodeId = this.clock.nodeId;
    this.catalog = new Catalog(store.db);
    this.log = new ChangeLog(store.db, this.catalog);
    this.tracker = new Tracker(store, this.clock, this.catalog, this.log);
    this.applier = new Applier(store, this.clock, this.catalog, this.log, options.relay === true);
    this.ingester = new Ingester(store, this.clock, options.ingestChunk);
    const every = options.ingestIntervalMs ?? DEFAULT_INGEST_INTERVAL_MS;
    if (every > 0) {
      this.timer = setInterval(() => {
        // A failed ingest (the file busy past every retry) leaves the rows
        // staged: the next tick or read takes them.
        try {
          this.ingester.ingest();
        } catch {}
      }, every);
      this.timer.unref();
    }
    // Direct-capture triggers (before migration 8) still work, logging as they
    // write: swap them for staged ones once, which is what the upgrade is for.
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
      this.ingester.ingest();
      return this.tracker.track(table, options);
    });
  }

  /** Stops capturing `table` and forgets its log entries; false when it was not tracked. */
  untrack(table: string): boolean {
    return this.store.write(() => {
      this.ingester.ingest();
      return this.tracker.untrack(table);
    });
  }

  /** Moves the writes capture staged into the log; returns how many events. */
  ingest(): number {
    return this.ingester.ingest();
  }

  /** The tracked tables, by name. */
  tables(): TrackedTableInfo[] {
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

  changesSince(cursor: string | number | bigint, options?: ChangesSinceOptions): ChangeSet {
    this.ingester.ingest();
    return this.log.since(cursor, options);
  }

  /** Merges a batch from other replicas; `from` names the peer that sent it (see ApplyOptions). */
  apply(changes: unknown, options?: ApplyOptions): ApplyResult {
    // One transaction: local writes are in the log before the batch is compared with it.
    return this.store.write(() => {
      this.ingester.ingest();
      return this.applier.apply(changes, options);
    });
  }

  /** The clock as it stands, staged writes counted: 16 hex digits. */
  now(): string {
    this.ingester.ingest();
    return formatHlc(this.clock.read().hlc);
  }

  /** The log's last sequence number, staged writes ingested: the cursor a reader of everything ends at. */
  head(): string {
    this.ingester.ingest();
    return String(this.clock.read().seq);
  }

  /**
   * Recovers from a clock that ran ahead: re-stamps this node's own changes
   * stamped beyond the drift window and sets the clock back (see clock-reset.ts).
   */
  resetClock(options: ClockResetOptions = {}): ClockResetResult {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const drift = options.maxDriftMs ?? this.clock.maxDriftMs;
    checkMs("maxDriftMs", drift);
    const now = options.now ?? Date.now();
    checkMs("now", now);
    return this.store.write(() => {
      this.ingester.ingest();
      return resetClock(this.store.db, this.clock, drift, now);
    });
  }

  stats(): ReplicaStats {
    this.ingester.ingest();
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
    this.ingester.ingest();
  }
}

function checkOptions(options: ReplicaOptions): void {
  if (options === null || typeof options !== "object")
    throw new InvalidArgumentError("options", "must be an object");
  if (options.nodeId !== undefined) checkNodeId("nodeId", options.nodeId);
  if (options.relay !== undefined && typeof options.relay !== "boolean")
    throw new InvalidArgumentError("relay", `must be a boolean, got ${String(options.relay)}`);
  const every = options.ingestIntervalMs;
  if (every !== undefined && (typeof every !== "number" || !Number.isFinite(every) || every < 0)) {
    throw new InvalidArgumentError(
      "ingestIntervalMs",
      `must be a finite number of ms >= 0, got ${String(every)}`,
    );
  }
  const chunk = options.ingestChunk;
  if (chunk !== undefined && (!Number.isSafeInteger(chunk) || chunk < 1)) {
    throw new InvalidArgumentError("ingestChunk", `must be a whole number >= 1, got ${String(chunk)}`);
  }
  if (options.maxDriftMs !== undefined) checkMs("maxDriftMs", options.maxDriftMs);
}

function checkMs(argument: string, d: unknown): void {
  if (typeof d !== "number" || !Number.isFinite(d) || d < 0) {
    throw new InvalidArgumentError(argument, `must be a finite number of ms >= 0, got ${String(d)}`);
  }
}

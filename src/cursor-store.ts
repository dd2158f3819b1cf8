/**
 * CursorStore: per peer (and bucket, and direction) the last sequence or
 * stream id applied, kept in `tw_cursors`.
 *
 * Contract: `set` only updates memory and marks the cursor dirty, so a sync
 * loop can move a cursor per batch for free; `flushDirty` writes every dirty
 * cursor in one IMMEDIATE transaction with busy retry, and on failure marks
 * them dirty again and rethrows, so nothing is lost, only delayed. Dirty
 * cursors are also flushed `flushIntervalMs` after the first `set` (debounce)
 * and when the store closes. `getOrStart` is "0" for a peer never seen.
 * Reopening a store restores every flushed cursor. A cursor is written after
 * the batch it covers is durable, so a crash in between re-sends a batch,
 * which applying twice makes harmless. Every flush with something to write
 * counts in /metrics (flushes, rows written, failures).
 */
import { InvalidArgumentError, StoreError } from "./errors.js";
import { cursorFlushErrors, cursorFlushes, cursorRowsFlushed } from "./metrics.js";
import type { Store } from "./store.js";
import { checkDuration, checkName } from "./validate.js";

export type Direction = "push" | "pull";

/** A peer id alone means bucket "*" (every bucket) and direction "pull". */
export type CursorKey = string | { peer: string; bucket?: string; direction?: Direction };

export interface Cursor {
  peer: string;
  bucket: string;
  direction: Direction;
  value: string;
  /** Epoch ms of the last `set`. */
  updatedAt: number;
  /** Set but not yet flushed. */
  dirty: boolean;
}

export interface CursorStoreOptions {
  /** Flush dirty cursors this long after the first unflushed `set`; 0: only on demand and close (default 1000). */
  flushIntervalMs?: number;
}

export const START = "0";
const ALL_BUCKETS = "*";
const MAX_VALUE = 256;

export class CursorStore {
  private readonly cursors = new Map<string, Cursor>();
  private readonly dirty = new Set<string>();
  private readonly flushIntervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly sql: ReturnType<typeof prepare>;
  /** The error of the last timed flush that failed, if any (its cursors stay dirty). */
  lastFlushError: Error | null = null;

  constructor(
    private readonly store: Store,
    options: CursorStoreOptions = {},
  ) {
    const ms = checkDuration("flushIntervalMs", options.flushIntervalMs ?? 1000);
    this.flushIntervalMs = ms;
    this.sql = prepare(store);
    this.reload();
    // The store calls this before it checkpoints and closes the database (isOpen is already false).
    store.onClose(() => {
      if (this.closed) return;
      this.stopTimer();
      this.closed = true;
      this.flushDirty();
    });
  }

  /** A file's flushed cursors, read once; none for a file from before cursors (what `status` shows). */
  static readAll(store: Store): Cursor[] {
    if (!store.hasTable("tw_cursors")) return [];
    return new CursorStore(store, { flushIntervalMs: 0 }).getAll();
  }

  /**
   * Re-reads the flushed cursors, for a long-lived store whose file another
   * process changes (`tidewire peers remove` deletes cursors): cursors gone
   * from the file are forgotten, dirty ones keep their unflushed value.
   */
  reload(): void {
    this.checkOpen();
    for (const k of [...this.cursors.keys()]) if (!this.dirty.has(k)) this.cursors.delete(k);
    for (const r of this.sql.all.all() as Array<
      Omit<Cursor, "dirty" | "updatedAt"> & { updated_at: number }
    >) {
      const k = id(r.peer, r.bucket, r.direction);
      if (this.dirty.has(k)) continue;
      this.cursors.set(k, {
        peer: r.peer,
        bucket: r.bucket,
        direction: r.direction,
        value: r.value,
        updatedAt: r.updated_at,
        dirty: false,
      });
    }
  }

  get(key: CursorKey): string | undefined {
    return this.cursors.get(normalize(key).id)?.value;
  }

  getOrStart(key: CursorKey): string {
    return this.get(key) ?? START;
  }

  set(key: CursorKey, value: string | number | bigint): void {
    this.checkOpen();
    const k = normalize(key);
    const v = checkValue(value);
    this.cursors.set(k.id, {
      peer: k.peer,
      bucket: k.bucket,
      direction: k.direction,
      value: v,
      updatedAt: Date.now(),
      dirty: true,
    });
    this.dirty.add(k.id);
    this.schedule();
  }

  /** Removes the cursor at once (from memory and the database); false when there was none. */
  delete(key: CursorKey): boolean {
    this.checkOpen();
    const k = normalize(key);
    const had = this.cursors.has(k.id);
    this.store.write(() => this.sql.remove.run(k.peer, k.bucket, k.direction), "cursor.delete");
    this.cursors.delete(k.id);
    this.dirty.delete(k.id);
    return had;
  }

  /** Removes every cursor of `peer` (all buckets, both directions) at once; returns how many rows went. */
  deletePeer(peer: string): number {
    this.checkOpen();
    const name = checkName("peer", peer);
    const removed = this.store.write(() => this.sql.removePeer.run(name).changes, "cursor.delete");
    for (const [k, c] of this.cursors) {
      if (c.peer !== name) continue;
      this.cursors.delete(k);
      this.dirty.delete(k);
    }
    return removed;
  }

  getAll(): Cursor[] {
    return [...this.cursors.values()]
      .map((c) => ({ ...c }))
      .sort((a, b) => cmp(a.peer, b.peer) || cmp(a.bucket, b.bucket) || cmp(a.direction, b.direction));
  }

  dirtyCount(): number {
    return this.dirty.size;
  }

  /** Writes every dirty cursor in one transaction; returns how many. On failure they stay dirty. */
  flushDirty(): number {
    if (this.dirty.size === 0) return 0;
    const ids = [...this.dirty];
    this.dirty.clear();
    const rows = ids.map((i) => this.cursors.get(i)).filter((c): c is Cursor => c !== undefined);
    cursorFlushes.inc();
    try {
      this.store.write(() => {
        for (const c of rows) this.sql.upsert.run(c.peer, c.bucket, c.direction, c.value, c.updatedAt);
      }, "cursor.flush");
    } catch (err) {
      for (const i of ids) this.dirty.add(i);
      cursorFlushErrors.inc();
      throw err;
    }
    cursorRowsFlushed.inc(rows.length);
    for (const c of rows) c.dirty = this.dirty.has(id(c.peer, c.bucket, c.direction));
    return rows.length;
  }

  /** Moves the WAL into the database file without waiting on readers or writers (PASSIVE). */
  checkpoint(): void {
    this.checkOpen();
    if (!this.store.readonly)
      this.store.retrying(() => this.store.db.pragma("wal_checkpoint(PASSIVE)"), "checkpoint");
  }

  /** Flushes, then checkpoints. Idempotent; runs by itself when the store closes. */
  close(): void {
    if (this.closed) return;
    this.stopTimer();
    if (this.store.isOpen) {
      this.flushDirty();
      this.checkpoint();
    }
    this.closed = true;
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer || this.flushIntervalMs === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.flushDirty();
        this.lastFlushError = null;
      } catch (err) {
        this.lastFlushError = err as Error;
        this.schedule();
      }
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError("the cursor store is closed", "ERR_CLOSED");
  }
}

function id(peer: string, bucket: string, direction: string): string {
  return `${peer}\u0000${bucket}\u0000${direction}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function normalize(key: CursorKey): { id: string; peer: string; bucket: string; direction: Direction } {
  const o = typeof key === "string" ? { peer: key } : key;
  if (o === null || typeof o !== "object")
    throw new InvalidArgumentError("key", "must be a peer id or { peer, bucket?, direction? }");
  const peer = checkName("peer", o.peer);
  const bucket = o.bucket === undefined ? ALL_BUCKETS : checkName("bucket", o.bucket);
  const direction = o.direction ?? "pull";
  if (direction !== "push" && direction !== "pull") {
    throw new InvalidArgumentError("direction", `must be push or pull, got ${JSON.stringify(direction)}`);
  }
  return { id: id(peer, bucket, direction), peer, bucket, direction };
}

function checkValue(value: unknown): string {
  if (typeof value === "bigint" && value >= 0n) return value.toString();
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === "string" && value.length > 0 && value.length <= MAX_VALUE) return value;
  throw new InvalidArgumentError(
    "value",
    `must be a sequence number >= 0 or a non-empty stream id of at most ${MAX_VALUE} characters, got ${JSON.stringify(String(value))}`,
  );
}

function prepare(store: Store) {
  const db = store.db;
  return {
    all: db.prepare("SELECT peer, bucket, direction, value, updated_at FROM tw_cursors"),
    upsert: db.prepare(
      `INSERT INTO tw_cursors (peer, bucket, direction, value, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (peer, bucket, direction) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    ),
    remove: db.prepare("DELETE FROM tw_cursors WHERE peer = ? AND bucket = ? AND direction = ?"),
    removePeer: db.prepare("DELETE FROM tw_cursors WHERE peer = ?"),
  };
}

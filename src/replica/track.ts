/**
 * Tracker: starts, refreshes and stops the capture of application tables.
 *
 * Contract: `track` is idempotent and atomic (one IMMEDIATE transaction). It
 * rebuilds the table's triggers from its current columns, so after
 * `ALTER TABLE … ADD COLUMN` a second `track` captures the new column, and
 * then reconciles the log with the table:
 *
 * - a row the log does not hold as existing is captured as an insert (the
 *   first `track` of a table captures every row this way);
 * - a key the log holds as existing that the table lacks is captured as a
 *   delete;
 * - a column new to capture takes the value of its live log entry — a change
 *   that arrived before this replica had the column — and otherwise, when it
 *   is not the default, is captured as an update.
 *
 * The log keeps no copy of the values the table holds, so an update made to
 * an existing row while no trigger was there cannot be seen, and is not
 * captured. Tracking a table this replica relayed (see `incoming.ts`) first
 * writes the relayed log's existing rows into it, whose values win over a
 * row the table already had under that key. `untrack` drops the triggers and
 * the table's log entries.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { checkName } from "../queue/validate.js";
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Clock } from "./hlc.js";
import { compareClocks } from "./hlc.js";
import { type ChangeLog, decodeRowValues, type Entry } from "./log.js";
import { rowsOf } from "./rows.js";
import { evalDefault, NotTrackableError, quoteIdent, readTable, type TableInfo } from "./schema.js";
import { ALIVE, DELETED, dropCaptureTriggers, installCaptureTriggers, ROW } from "./triggers.js";
import { compositeKeyProblem, decodeKey, encodeKey, keyString, type SqlValue, sameValue } from "./values.js";

export interface TrackOptions {
  /** The bucket the table syncs in (default "default"). */
  bucket?: string;
}

export interface TrackedTableInfo {
  table: string;
  bucket: string;
  key: string[];
  columns: string[];
}

export const DEFAULT_BUCKET = "default";

interface KeyState {
  key: SqlValue;
  row: Entry | null;
  cols: Map<string, Entry>;
}

export class Tracker {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
  ) {
    this.sql = prepare(store.db);
  }

  track(table: unknown, options: TrackOptions = {}): TrackedTableInfo {
    const name = checkName("table", table);
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const given = options.bucket === undefined ? undefined : checkName("bucket", options.bucket);
    return this.store.write(() => {
      const info = readTable(this.store.db, name);
      this.catalog.refresh(true);
      const prev = this.catalog.get(name);
      const relayed = prev ? undefined : this.catalog.peekRelayed(name);
      const bucket = given ?? relayed?.bucket ?? DEFAULT_BUCKET;
      const sameKey = prev !== undefined && prev.pk.join("\u0000") === info.pk.join("\u0000");
      const fields = [bucket, JSON.stringify(info.pk), JSON.stringify(info.columns)] as const;
      const old = prev ?? relayed;
      let id: number;
      if (old) {
        id = old.id;
        // A new key makes the old entries' keys meaningless: start the table's log afresh.
        if (prev ? !sameKey : old.pk.length !== info.pk.length) this.log.dropTable(id);
        this.sql.update.run(...fields, id);
      } else {
        id = Number(this.sql.insert.get(name, ...fields, Date.now()));
      }
      installCaptureTriggers(this.store.db, id, info);
      this.catalog.refresh(true);
      const t = this.catalog.getById(id)!;
      this.clock.suppress(true);
      if (relayed) this.spreadRelayedValues(t);
      if (relayed && relayed.pk.length === info.pk.length) {
        this.materializeRelayed(t);
        this.reconcile(t, info, t.columnSet);
      } else this.reconcile(t, info, prev && sameKey ? prev.columnSet : null);
      this.clock.suppress(false);
      return describeTracked(t);
    });
  }

  untrack(table: unknown): boolean {
    const name = checkName("table", table);
    return this.store.write(() => {
      this.catalog.refresh(true);
      const t = this.catalog.get(name);
      dropCaptureTriggers(this.store.db, name);
      if (!t) return false;
      this.log.dropTable(t.id);
      this.sql.remove.run(t.id);
      this.catalog.refresh(true);
      return true;
    });
  }

  private reconcile(t: TrackedTable, info: TableInfo, captured: ReadonlySet<string> | null): void {
    const db = this.store.db;
    const keys = new Map<string, KeyState>();
    for (const e of this.sql.entries.all(t.id) as Array<Entry & { pk: SqlValue }>) {
      const id = keyString(e.pk);
      let k = keys.get(id);
      if (!k) {
        k = { key: e.pk, row: null, cols: new Map() };
        keys.set(id, k);
      }
      if (e.col === ROW) k.row = e;
      else k.cols.set(e.col, e);
    }
    const defaults = new Map<string, { value: unknown; known: boolean }>();
    const isDefault = (col: string, v: SqlValue): boolean => {
      let d = defaults.get(col);
      if (!d) {
        try {
          d = { value: evalDefault(db, info.defaults.get(col) ?? null), known: true };
        } catch {
          d = { value: null, known: false };
        }
        defaults.set(col, d);
      }
      return d.known && sameValue(d.value as SqlValue, v);
    };
    const select = `SELECT ${[...t.pk, ...t.columns].map(quoteIdent).join(", ")} FROM ${quoteIdent(t.name)}`;
    const rows = db.prepare(select).raw(true).safeIntegers(true).all() as SqlValue[][];
    const seen = new Set<string>();
    const setters = new Map<string, Database.Statement>();
    const where = t.pk.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
    const setColumn = (col: string, val: SqlValue, parts: SqlValue[]) => {
      let st = setters.get(col);
      if (!st) {
        st = db.prepare(`UPDATE ${quoteIdent(t.name)} SET ${quoteIdent(col)} = ? WHERE ${where}`);
        setters.set(col, st);
      }
      st.run(val, ...parts);
    };
    for (const r of rows) {
      const parts = r.slice(0, t.pk.length);
      for (const p of parts) {
        const problem = t.pk.length > 1 ? compositeKeyProblem(p) : p === null ? "a NULL key" : null;
        if (problem) throw new NotTrackableError(t.name, `a row has ${problem}`);
      }
      const key = encodeKey(parts);
      const id = keyString(key);
      seen.add(id);
      const values = new Map(t.columns.map((c, i) => [c, r[t.pk.length + i] as SqlValue]));
      const k = keys.get(id);
      if (k?.row?.val !== BigInt(ALIVE)) {
        this.capture(t, key, true, values);
        continue;
      }
      const row = k.row;
      const changed = new Map<string, SqlValue>();
      for (const [c, v] of values) {
        // A captured column's value is the table's own: the log has nothing to compare it with.
        if (!captured || captured.has(c)) continue;
        const e = k.cols.get(c);
        const live = e && compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0 ? e : undefined;
        if (live) {
          if (!sameValue(live.val, v)) setColumn(c, live.val, parts);
        } else if (!isDefault(c, v)) changed.set(c, v);
      }
      if (changed.size > 0) this.capture(t, key, false, changed);
    }
    for (const [id, k] of keys) {
      if (!seen.has(id) && k.row?.val === BigInt(ALIVE)) this.captureDelete(t, k.key);
    }
  }

  /**
   * One local event, as the triggers record it: an insert is its row entry
   * alone, an update an entry per column; the values stay in the table.
   */
  private capture(t: TrackedTable, key: SqlValue, insert: boolean, values: Map<string, SqlValue>): void {
    const { hlc, seq } = this.clock.tick();
    const origin = this.clock.nodeId;
    if (insert) {
      this.log.prune(t.id, key, hlc, origin);
      this.log.put(t.id, key, { col: ROW, val: BigInt(ALIVE), hlc, origin, seq });
      return;
    }
    for (const col of values.keys()) this.log.put(t.id, key, { col, val: null, hlc, origin, seq });
  }

  /**
   * Gives each value a relayed row entry holds (`vals`) an entry of its own,
   * at the row's clock, unless the column has a newer one: from here on the
   * table holds the values, and a column it lacks keeps its value in the log.
   */
  private spreadRelayedValues(t: TrackedTable): void {
    const entries = this.sql.entries.all(t.id) as Array<Entry & { pk: SqlValue }>;
    const own = new Set(entries.filter((e) => e.col !== ROW).map((e) => `${keyString(e.pk)}\u0000${e.col}`));
    const flat: unknown[] = [];
    for (const e of entries) {
      if (e.col !== ROW || !e.vals) continue;
      for (const [col, val] of decodeRowValues(e.vals)) {
        if (own.has(`${keyString(e.pk)}\u0000${col}`)) continue;
        flat.push(t.id, e.pk, col, val, e.hlc, e.origin, e.seq, e.src ?? null, null);
      }
    }
    this.log.putMany(flat);
    this.sql.clearValues.run(t.id);
  }

  /**
   * Writes every row a relayed table's log holds as existing into the table
   * that now carries its name: live entries' values, else the defaults.
   */
  private materializeRelayed(t: TrackedTable): void {
    const keys = new Map<string, KeyState>();
    for (const e of this.sql.entries.all(t.id) as Array<Entry & { pk: SqlValue }>) {
      const id = keyString(e.pk);
      const k = keys.get(id) ?? { key: e.pk, row: null, cols: new Map() };
      keys.set(id, k);
      if (e.col === ROW) k.row = e;
      else k.cols.set(e.col, e);
    }
    const w = rowsOf(this.store.db, t);
    const flat: SqlValue[] = [];
    for (const k of keys.values()) {
      const row = k.row;
      if (row?.val !== BigInt(ALIVE)) continue;
      const values = t.columns.map((c) => {
        const e = k.cols.get(c);
        const live = e && compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0;
        return live ? e.val : w.defaultOf(c);
      });
      flat.push(...decodeKey(k.key, t.pk.length), ...values);
    }
    w.upsert(t.columns, flat);
  }

  private captureDelete(t: TrackedTable, key: SqlValue): void {
    const { hlc, seq } = this.clock.tick();
    const origin = this.clock.nodeId;
    this.log.prune(t.id, key, hlc, origin);
    this.log.put(t.id, key, { col: ROW, val: BigInt(DELETED), hlc, origin, seq });
  }
}

export function describeTracked(t: TrackedTable): TrackedTableInfo {
  return { table: t.name, bucket: t.bucket, key: [...t.pk], columns: [...t.columns] };
}

function prepare(db: Database.Database) {
  return {
    insert: db
      .prepare(
        "INSERT INTO tw_tracked (name, bucket, pk, cols, tracked_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
      )
      .pluck(),
    update: db.prepare("UPDATE tw_tracked SET bucket = ?, pk = ?, cols = ?, relayed = 0 WHERE id = ?"),
    remove: db.prepare("DELETE FROM tw_tracked WHERE id = ?"),
    entries: db
      .prepare("SELECT pk, col, val, hlc, origin, seq, src, vals FROM tw_log WHERE tbl = ?")
      .safeIntegers(true),
    clearValues: db.prepare("UPDATE tw_log SET vals = NULL WHERE tbl = ? AND vals IS NOT NULL"),
  };
}

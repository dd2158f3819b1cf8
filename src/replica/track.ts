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
 * - a column that was captured before and whose value differs from its live
 *   entry (or, having none, from its default) is captured as an update:
 *   a write made while no trigger was there;
 * - a column new to capture takes the value of its live log entry — a change
 *   that arrived before this replica had the column — and otherwise, when it
 *   is not the default, is captured.
 *
 * `untrack` drops the triggers and the table's log entries.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { checkName } from "../queue/validate.js";
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Clock } from "./hlc.js";
import { compareClocks } from "./hlc.js";
import type { ChangeLog, Entry } from "./log.js";
import { evalDefault, NotTrackableError, quoteIdent, readTable, type TableInfo } from "./schema.js";
import { ALIVE, DELETED, dropCaptureTriggers, installCaptureTriggers, ROW } from "./triggers.js";
import { compositeKeyProblem, encodeKey, keyString, type SqlValue, sameValue } from "./values.js";

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
    const bucket = options.bucket === undefined ? DEFAULT_BUCKET : checkName("bucket", options.bucket);
    return this.store.write(() => {
      const info = readTable(this.store.db, name);
      this.catalog.refresh(true);
      const prev = this.catalog.get(name);
      const sameKey = prev !== undefined && prev.pk.join("\u0000") === info.pk.join("\u0000");
      const fields = [bucket, JSON.stringify(info.pk), JSON.stringify(info.columns)] as const;
      let id: number;
      if (prev) {
        id = prev.id;
        // A new key makes the old entries' keys meaningless: start the table's log afresh.
        if (!sameKey) this.log.dropTable(id);
        this.sql.update.run(...fields, id);
      } else {
        id = Number(this.sql.insert.get(name, ...fields, Date.now()));
      }
      installCaptureTriggers(this.store.db, id, info);
      this.catalog.refresh(true);
      const t = this.catalog.getById(id)!;
      this.clock.suppress(true);
      this.reconcile(t, info, prev && sameKey ? prev.columnSet : null);
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
        const e = k.cols.get(c);
        const live = e && compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0 ? e : undefined;
        if (captured && !captured.has(c) && live) {
          if (!sameValue(live.val, v)) setColumn(c, live.val, parts);
        } else if (live ? !sameValue(live.val, v) : !isDefault(c, v)) {
          changed.set(c, v);
        }
      }
      if (changed.size > 0) this.capture(t, key, false, changed);
    }
    for (const [id, k] of keys) {
      if (!seen.has(id) && k.row?.val === BigInt(ALIVE)) this.captureDelete(t, k.key);
    }
  }

  /** One local event writing `values` (an insert writes the row entry too). */
  private capture(t: TrackedTable, key: SqlValue, insert: boolean, values: Map<string, SqlValue>): void {
    const { hlc, seq } = this.clock.tick();
    const origin = this.clock.nodeId;
    if (insert) {
      this.log.prune(t.id, key, hlc, origin);
      this.log.put(t.id, key, { col: ROW, val: BigInt(ALIVE), hlc, origin, seq });
    }
    for (const [col, val] of values) this.log.put(t.id, key, { col, val, hlc, origin, seq });
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
    update: db.prepare("UPDATE tw_tracked SET bucket = ?, pk = ?, cols = ? WHERE id = ?"),
    remove: db.prepare("DELETE FROM tw_tracked WHERE id = ?"),
    entries: db.prepare("SELECT pk, col, val, hlc, origin, seq FROM tw_log WHERE tbl = ?").safeIntegers(true),
  };
}

/**
 * Tracker: starts, refreshes and stops the capture of application tables.
 *
 * Contract: `track` is idempotent and atomic (one IMMEDIATE transaction). It
 * installs the table's key-only triggers and records its current columns,
 * then reconciles the log with the table (reconcile.ts): every insert,
 * update and delete the triggers did not see is captured. `restore` is the
 * same for a table a schema change touched (the schema watch, evolve.ts,
 * calls it): columns are matched old to new, a column renamed in place keeps
 * its log entries, a dropped one's entries go, an added one takes the value
 * a peer sent before this replica had it. A key of another arity starts the
 * table's log afresh. Tracking a table this replica relayed (see
 * `incoming.ts`) first writes the relayed log's existing rows into it, whose
 * values win over a row the table already had under that key. `untrack`
 * drops the triggers and the table's log entries.
 */
import type Database from "better-sqlite3";
import type { Store } from "../store.js";
import { checkName, checkObject } from "../validate.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { columnHash, fingerprint } from "./fingerprint.js";
import type { Clock } from "./hlc.js";
import { compareClocks } from "./hlc.js";
import { type ChangeLog, decodeRowValues, type Entry } from "./log.js";
import { type Previous, Reconciler } from "./reconcile.js";
import { rowsOf } from "./rows.js";
import { readTable, type TableInfo } from "./schema.js";
import { ALIVE, dropCaptureTriggers, installCaptureTriggers, ROW } from "./triggers.js";
import { decodeKey, keyString, type SqlValue } from "./values.js";

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
    checkObject("options", options);
    const given = options.bucket === undefined ? undefined : checkName("bucket", options.bucket);
    return this.store.write(() => this.install(name, given), "replica.track");
  }

  /**
   * Brings capture of a tracked table back in line with its schema, in the
   * caller's write transaction: after a rebuild (the triggers went with the
   * old table), a column change, or `ALTER TABLE … RENAME TO` (`renamedTo`:
   * the triggers followed the table there).
   */
  restore(t: TrackedTable, renamedTo?: string): TrackedTableInfo {
    if (renamedTo !== undefined) {
      this.sql.rename.run(renamedTo, t.id);
      // Peers still send changes under the old name (they have not migrated yet, or sent
      // them before): remember it. A name taken back loses its alias; chains follow.
      this.sql.aliasDrop.run(renamedTo);
      this.sql.aliasFollow.run(renamedTo, t.name);
      this.sql.alias.run(t.name, renamedTo, Date.now());
      // And send the table again under its new name: its entries take new sequence
      // numbers (one per event, as before), so every peer's cursor is behind them.
      const { hlc, seq } = this.clock.read();
      const events = BigInt(this.sql.events.get(t.id) as number);
      this.sql.resequence.run({ tbl: t.id, base: seq });
      this.clock.observe(hlc, seq + events);
      this.catalog.refresh(true);
    }
    return this.install(renamedTo ?? t.name, t.bucket);
  }

  private install(name: string, given: string | undefined): TrackedTableInfo {
    const info = readTable(this.store.db, name);
    this.catalog.refresh(true);
    const prev = this.catalog.get(name);
    const relayed = prev ? undefined : this.catalog.peekRelayed(name);
    const bucket = given ?? relayed?.bucket ?? DEFAULT_BUCKET;
    const sameKey = prev !== undefined && keptKey(prev, info);
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
    const reconciler = new Reconciler(this.store.db, this.clock, this.log);
    if (relayed) this.spreadRelayedValues(t);
    if (relayed && relayed.pk.length === info.pk.length) {
      this.materializeRelayed(t);
      reconciler.run(t, info, { columns: t.columns, renames: new Map() });
    } else reconciler.run(t, info, prev && sameKey ? this.previous(prev, info) : null);
    this.clock.suppress(false);
    return describeTracked(t);
  }

  untrack(table: unknown): boolean {
    const name = checkName("table", table);
    return this.store.write(() => {
      this.catalog.refresh(true);
      const t = this.catalog.get(name);
      dropCaptureTriggers(this.store.db, name);
      this.catalog.setProblem(name, null);
      if (!t) return false;
      this.log.dropTable(t.id);
      this.sql.remove.run(t.id);
      this.catalog.refresh(true);
      return true;
    }, "replica.track");
  }

  /**
   * The columns capture knew, and which of today's were renamed from which. A
   * column renamed in place (ALTER TABLE … RENAME COLUMN) keeps its position:
   * with as many columns as before, a new name where an old one vanished at
   * the same place is taken for that column renamed if its values still match
   * the old column's fingerprints (in a sample of rows), so a column dropped
   * and another added between two checks is not.
   */
  private previous(prev: TrackedTable, info: TableInfo): Previous {
    const renames = new Map<string, string>();
    if (prev.columns.length !== info.columns.length) return { columns: prev.columns, renames };
    const now = new Set(info.columns);
    const moved = prev.columns.some((c, i) => c !== info.columns[i] && !now.has(c));
    if (!moved) return { columns: prev.columns, renames };
    const sample = this.sql.sample.all(prev.id) as Array<{ pk: SqlValue; fp: Uint8Array | null }>;
    const rows = rowsOf(this.store.db, this.catalog.getById(prev.id)!);
    const current = rows.readMany(sample.map((r) => r.pk));
    prev.columns.forEach((c, i) => {
      const n = info.columns[i] as string;
      if (n === c || now.has(c) || prev.columnSet.has(n)) return;
      let same = 0;
      let seen = 0;
      for (const r of sample) {
        const values = current.get(keyString(r.pk));
        const was = columnHash(r.fp, i, prev.columns.length);
        if (!values || !was) continue;
        seen++;
        if (was.equals(fingerprint([values[i] as SqlValue]))) same++;
      }
      if (seen === 0 || same * 2 >= seen) renames.set(n, c);
    });
    return { columns: prev.columns, renames };
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
        flat.push(t.id, e.pk, col, val, e.hlc, e.origin, e.seq, e.src ?? null, null, null);
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
}

/**
 * Whether the log's keys still name the table's rows: the same arity, each
 * part the same column, or one renamed in place (its old name is gone).
 */
function keptKey(prev: TrackedTable, info: TableInfo): boolean {
  if (prev.pk.length !== info.pk.length) return false;
  const now = new Set([...info.pk, ...info.columns]);
  return prev.pk.every((c, i) => c === info.pk[i] || !now.has(c));
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
    rename: db.prepare("UPDATE tw_tracked SET name = ? WHERE id = ?"),
    alias: db.prepare("INSERT OR REPLACE INTO tw_renames (old, new, at) VALUES (?, ?, ?)"),
    aliasDrop: db.prepare("DELETE FROM tw_renames WHERE old = ?"),
    aliasFollow: db.prepare("UPDATE tw_renames SET new = ? WHERE new = ?"),
    // Entries of one event share a sequence number: they keep sharing one.
    resequence: db.prepare(
      `UPDATE tw_log SET seq = :base + n.r
       FROM (SELECT s, row_number() OVER (ORDER BY s) AS r FROM (SELECT DISTINCT seq AS s FROM tw_log WHERE tbl = :tbl)) AS n
       WHERE tbl = :tbl AND seq = n.s`,
    ),
    events: db.prepare("SELECT count(DISTINCT seq) FROM tw_log WHERE tbl = ?").pluck(),
    remove: db.prepare("DELETE FROM tw_tracked WHERE id = ?"),
    entries: db
      .prepare("SELECT pk, col, val, hlc, origin, seq, src, vals FROM tw_log WHERE tbl = ?")
      .safeIntegers(true),
    // Rows whose fingerprints tell a renamed column from a dropped one (see `previous`).
    sample: db
      .prepare("SELECT pk, fp FROM tw_log WHERE tbl = ? AND col = '' AND val = 1 AND fp IS NOT NULL LIMIT 64")
      .safeIntegers(true),
    clearValues: db.prepare("UPDATE tw_log SET vals = NULL WHERE tbl = ? AND vals IS NOT NULL"),
  };
}

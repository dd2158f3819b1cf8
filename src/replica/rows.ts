/**
 * RowWriter: reads and writes the rows of an application table by key, for
 * the log (which keeps no copy of values the table holds) and the applier.
 *
 * Contract: `read` returns a row's captured columns by name, or null when the
 * key has no row; `upsert` inserts each row's key and the given columns, or
 * updates those columns when the key exists, many rows per statement — so it
 * is only for whole rows: SQLite checks NOT NULL on the insert before the
 * conflict turns it into an update; `update` changes some columns of an
 * existing row and says whether there was one; `remove` deletes rows by key. Statements are prepared once per table and
 * column set; `rowsOf` keeps one RowWriter per catalog entry. Writes need
 * capture already suppressed by the caller's transaction. Names come from the
 * tracked schema and are quoted; values are only ever bound.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import { evalDefault, quoteIdent } from "./schema.js";
import { decodeKey, keyString, type SqlValue } from "./values.js";

/** Bound parameters per statement, well below SQLite's 32766. */
const MAX_PARAMS = 8000;
const MAX_ROWS = 200;
/**
 * Keys per set-wise read, largest first: a few prepared sizes serve any
 * count (5 keys: 4 then 1) without padding, and small pages stay cheap.
 */
const CHUNKS = [256, 64, 16, 4, 1];

/** The largest statement size that `left` keys fill. */
export function chunkSize(left: number): number {
  for (const n of CHUNKS) if (n <= left) return n;
  return 1;
}

export function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}

/**
 * A table's UNIQUE indexes other than its key, as column lists; an index on
 * an expression is left out (no column to compare), and a partial one unless
 * `partial` (its WHERE is not compared).
 */
export interface UniqueIndex {
  name: string;
  cols: string[];
}

export function uniqueIndexes(db: Database.Database, table: string, partial: boolean): UniqueIndex[] {
  const names = db
    .prepare(
      `SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND origin <> 'pk'${partial ? "" : " AND partial = 0"}`,
    )
    .pluck()
    .all(table) as string[];
  const info = db.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno").pluck();
  const out: UniqueIndex[] = [];
  for (const name of names) {
    const cols = info.all(name) as Array<string | null>;
    if (cols.every((c) => c !== null)) out.push({ name, cols: cols as string[] });
  }
  return out;
}

/** A column's value in a row given as its key's parts and its other columns' values. */
export function columnOf(
  t: TrackedTable,
  parts: SqlValue[],
  values: ReadonlyMap<string, SqlValue>,
  col: string,
): SqlValue {
  return (t.pkSet.has(col) ? parts[t.pk.indexOf(col)] : values.get(col)) ?? null;
}

const writers = new WeakMap<TrackedTable, RowWriter>();

/** The RowWriter of a tracked table (one per catalog entry, so per schema). */
export function rowsOf(db: Database.Database, t: TrackedTable): RowWriter {
  let w = writers.get(t);
  if (!w) {
    w = new RowWriter(db, t);
    writers.set(t, w);
  }
  return w;
}

export class RowWriter {
  private readonly remover: Database.Statement;
  private readonly reader: Database.Statement;
  /** Set-wise readers of a single-column key, by chunk size (see `chunkSize`). */
  private readonly manyReaders = new Map<number, Database.Statement>();
  private readonly upserts = new Map<string, Database.Statement>();
  private readonly updates = new Map<string, Database.Statement>();
  private readonly manyUpdates = new Map<string, Database.Statement>();
  private readonly holders = new Map<string, Database.Statement>();
  private readonly defaults = new Map<string, SqlValue>();

  constructor(
    private readonly db: Database.Database,
    private readonly t: TrackedTable,
  ) {
    const where = t.pk.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
    this.remover = db.prepare(`DELETE FROM ${quoteIdent(t.name)} WHERE ${where}`);
    const cols = t.columns.length ? t.columns.map(quoteIdent).join(", ") : "1";
    this.reader = db
      .prepare(`SELECT ${cols} FROM ${quoteIdent(t.name)} WHERE ${where}`)
      .raw(true)
      .safeIntegers(true);
  }

  /** The row's captured columns, or null when no row has this key. */
  read(parts: SqlValue[]): Map<string, SqlValue> | null {
    const r = this.reader.get(...parts) as SqlValue[] | undefined;
    if (!r) return null;
    return new Map(this.t.columns.map((c, i) => [c, r[i] as SqlValue]));
  }

  /**
   * The captured columns (in `columns` order) of the rows with these stored
   * keys, by `keyString` of the key; keys without a row are absent.
   */
  readMany(keys: SqlValue[]): Map<string, SqlValue[]> {
    const out = new Map<string, SqlValue[]>();
    const width = this.t.columns.length;
    if (this.t.pk.length > 1) {
      for (const key of keys) {
        const r = this.reader.get(...decodeKey(key, this.t.pk.length)) as SqlValue[] | undefined;
        if (r) out.set(keyString(key), width ? r : []);
      }
      return out;
    }
    // A single-column key is its own stored form: many rows in one indexed IN.
    for (let i = 0; i < keys.length; ) {
      const n = chunkSize(keys.length - i);
      for (const r of this.manyReader(n).all(...keys.slice(i, i + n)) as SqlValue[][]) {
        out.set(keyString(r[0] as SqlValue), width ? r.slice(1) : []);
      }
      i += n;
    }
    // A key the table's collation matches under another spelling: read it as `read` would.
    if (out.size < keys.length) {
      for (const key of keys) {
        const id = keyString(key);
        if (out.has(id)) continue;
        const r = this.reader.get(key) as SqlValue[] | undefined;
        if (r) out.set(id, width ? r : []);
      }
    }
    return out;
  }

  private manyReader(n: number): Database.Statement {
    let st = this.manyReaders.get(n);
    if (!st) {
      const key = quoteIdent(this.t.pk[0]!);
      const cols = this.t.columns.length ? this.t.columns.map(quoteIdent).join(", ") : "1";
      st = this.db
        .prepare(
          `SELECT ${key}, ${cols} FROM ${quoteIdent(this.t.name)} WHERE ${key} IN (${placeholders(n)})`,
        )
        .raw(true)
        .safeIntegers(true);
      this.manyReaders.set(n, st);
    }
    return st;
  }

  remove(parts: SqlValue[]): void {
    this.remover.run(...parts);
  }

  /**
   * Inserts or updates rows given flat: for each row its key's values, then
   * the values of `names`, in that order.
   */
  upsert(names: string[], flat: SqlValue[]): void {
    const width = this.t.pk.length + names.length;
    const per = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_PARAMS / width))) * width;
    for (let i = 0; i < flat.length; i += per) {
      const chunk = flat.length - i > per ? flat.slice(i, i + per) : i === 0 ? flat : flat.slice(i);
      this.statement(names, chunk.length / width).run(...chunk);
    }
  }

  /**
   * Sets `names` in many existing rows, given flat as for `upsert`: one
   * `UPDATE … FROM (VALUES …)` per chunk, which SQLite runs as a scan of the
   * values and a key seek per row. Returns how many rows it changed: fewer
   * than given means some key had no row.
   */
  updateMany(names: string[], flat: SqlValue[]): number {
    const width = this.t.pk.length + names.length;
    const per = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_PARAMS / width))) * width;
    let changed = 0;
    for (let i = 0; i < flat.length; i += per) {
      const chunk = flat.length - i > per ? flat.slice(i, i + per) : i === 0 ? flat : flat.slice(i);
      changed += this.updateStatement(names, chunk.length / width).run(...chunk).changes;
    }
    return changed;
  }

  private updateStatement(names: string[], rows: number): Database.Statement {
    const id = `${rows}\u0000${names.join("\u0000")}`;
    let st = this.manyUpdates.get(id);
    if (!st) {
      const k = this.t.pk.length;
      const width = k + names.length;
      const tuple = `(${Array.from({ length: width }, () => "?").join(", ")})`;
      const set = names.map((c, i) => `${quoteIdent(c)} = v.column${k + i + 1}`).join(", ");
      const on = this.t.pk
        .map((c, i) => `${quoteIdent(this.t.name)}.${quoteIdent(c)} = v.column${i + 1}`)
        .join(" AND ");
      st = this.db.prepare(
        `UPDATE ${quoteIdent(this.t.name)} SET ${set}
         FROM (VALUES ${Array.from({ length: rows }, () => tuple).join(", ")}) AS v WHERE ${on}`,
      );
      if (this.manyUpdates.size >= 512) this.manyUpdates.clear();
      this.manyUpdates.set(id, st);
    }
    return st;
  }

  /** Sets `names` to `values` in the row with this key; false when there is no such row. */
  update(names: string[], parts: SqlValue[], values: SqlValue[]): boolean {
    const id = names.join("\u0000");
    let st = this.updates.get(id);
    if (!st) {
      const set = names.map((c) => `${quoteIdent(c)} = ?`).join(", ");
      const where = this.t.pk.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
      st = this.db.prepare(`UPDATE ${quoteIdent(this.t.name)} SET ${set} WHERE ${where}`);
      if (this.updates.size >= 512) this.updates.clear();
      this.updates.set(id, st);
    }
    return st.run(...values, ...parts).changes > 0;
  }

  /**
   * The keys of the rows other than `parts` whose `cols` hold `values` (a
   * unique index's columns: at most one such row before a write breaks it).
   */
  othersHolding(cols: string[], values: SqlValue[], parts: SqlValue[]): SqlValue[][] {
    const id = cols.join("\u0000");
    let st = this.holders.get(id);
    if (!st) {
      const where = cols.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
      const self = this.t.pk.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
      st = this.db
        .prepare(
          `SELECT ${this.t.pk.map(quoteIdent).join(", ")} FROM ${quoteIdent(this.t.name)} WHERE ${where} AND NOT (${self})`,
        )
        .raw(true)
        .safeIntegers(true);
      this.holders.set(id, st);
    }
    return st.all(...values, ...parts) as SqlValue[][];
  }

  /** The column's declared default, evaluated once. */
  defaultOf(col: string): SqlValue {
    if (!this.defaults.has(col)) {
      const row = this.db
        .prepare("SELECT dflt_value FROM pragma_table_xinfo(?) WHERE name = ?")
        .get(this.t.name, col) as { dflt_value: string | null } | undefined;
      this.defaults.set(col, evalDefault(this.db, row?.dflt_value ?? null) as SqlValue);
    }
    return this.defaults.get(col) as SqlValue;
  }

  private statement(names: string[], rows: number): Database.Statement {
    const id = `${rows}\u0000${names.join("\u0000")}`;
    let st = this.upserts.get(id);
    if (!st) {
      const cols = [...this.t.pk, ...names].map(quoteIdent);
      const tuple = `(${cols.map(() => "?").join(", ")})`;
      const action = names.length
        ? `DO UPDATE SET ${names.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(", ")}`
        : "DO NOTHING";
      st = this.db.prepare(
        `INSERT INTO ${quoteIdent(this.t.name)} (${cols.join(", ")})
         VALUES ${Array.from({ length: rows }, () => tuple).join(", ")}
         ON CONFLICT (${this.t.pk.map(quoteIdent).join(", ")}) ${action}`,
      );
      // Column sets of partial updates vary; keep the cache bounded.
      if (this.upserts.size >= 512) this.upserts.clear();
      this.upserts.set(id, st);
    }
    return st;
  }
}

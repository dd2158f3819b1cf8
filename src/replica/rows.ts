/**
 * RowWriter: reads and writes the rows of an application table by key, for
 * the log (which keeps no copy of values the table holds) and the applier.
 *
 * Contract: `read` returns a row's captured columns by name, or null when the
 * key has no row; `upsert` inserts each row's key and the given columns, or
 * updates those columns when the key exists, many rows per statement;
 * `remove` deletes rows by key. Statements are prepared once per table and
 * column set; `rowsOf` keeps one RowWriter per catalog entry. Writes need
 * capture already suppressed by the caller's transaction. Names come from the
 * tracked schema and are quoted; values are only ever bound.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import { evalDefault, quoteIdent } from "./schema.js";
import type { SqlValue } from "./values.js";

/** Bound parameters per statement, well below SQLite's 32766. */
const MAX_PARAMS = 8000;
const MAX_ROWS = 200;

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
  private readonly upserts = new Map<string, Database.Statement>();
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

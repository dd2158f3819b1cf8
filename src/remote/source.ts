/**
 * Source: reads the rows a push sends from the local database — whole rows
 * by key for an incremental push, pages in key order for a full push — and
 * the tables' schemas.
 *
 * Contract: values come back with their storage class (INTEGER as bigint,
 * REAL as number, BLOB as Buffer). Pages use keyset pagination on the
 * primary key, so each page is one index range, however large the table.
 * Statements are prepared once per table and kept (the shapes' fingerprint
 * is FullPush.shape's).
 */
import type Database from "better-sqlite3";
import { quoteIdent } from "../replica/schema.js";
import type { TrackedTableInfo } from "../replica/track.js";
import type { SqlValue } from "../replica/values.js";
import type { Store } from "../store.js";
import type { TableSchema } from "./payload.js";
import { affinityOf } from "./sql.js";

interface TableStatements {
  all: Database.Statement;
  byKey: Database.Statement;
  first: Database.Statement;
  after: Database.Statement;
  count: Database.Statement;
}

export class Source {
  private readonly prepared = new Map<string, TableStatements>();
  private readonly columnsSql: Database.Statement;
  private readonly tableSql: Database.Statement;

  constructor(private readonly store: Store) {
    this.columnsSql = store.db.prepare("SELECT name, type FROM pragma_table_info(?) ORDER BY cid");
    this.tableSql = store.db
      .prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?")
      .pluck();
  }

  /** Key and tracked columns of each table, with their affinities and declared types, in table order. */
  schemas(tables: TrackedTableInfo[]): TableSchema[] {
    return tables.map((t) => {
      const declared = new Map(
        (this.columnsSql.all(t.table) as Array<{ name: string; type: string }>).map((c) => [c.name, c.type]),
      );
      const tracked = new Set([...t.key, ...t.columns]);
      const names = [...declared.keys()].filter((n) => tracked.has(n));
      const sql = String(this.tableSql.get(t.table) ?? "");
      return {
        name: t.table,
        key: [...t.key],
        columns: names.map((name) => {
          const type = declared.get(name) ?? "";
          const c = { name, ...affinityOf(type), declared: type };
          return checksJson(sql, name) ? { ...c, json: true } : c;
        }),
      };
    });
  }

  /** Every row, in no order, read as the push reads them (for choosing a target's column types). */
  scan(t: TableSchema): IterableIterator<SqlValue[]> {
    return this.statements(t).all.iterate() as IterableIterator<SqlValue[]>;
  }

  /** The current row for each key (in the schema's column order), or null where it is gone. */
  rows(t: TableSchema, keys: SqlValue[][]): Array<SqlValue[] | null> {
    const st = this.statements(t).byKey;
    return this.store.db.transaction(() =>
      keys.map((k) => (st.get(...k) as SqlValue[] | undefined) ?? null),
    )();
  }

  /** Up to `limit` rows after `after` (a key, or null for the start) in key order. */
  page(t: TableSchema, after: SqlValue[] | null, limit: number): SqlValue[][] {
    const s = this.statements(t);
    return (after === null ? s.first.all(limit) : s.after.all(...after, limit)) as SqlValue[][];
  }

  count(t: TableSchema): number {
    return Number(this.statements(t).count.get() as bigint);
  }

  /** The key of a row read by `rows` or `page`. */
  keyOf(t: TableSchema, row: SqlValue[]): SqlValue[] {
    return t.key.map((k) => row[t.columns.findIndex((c) => c.name === k)] ?? null);
  }

  private statements(t: TableSchema): TableStatements {
    const id = JSON.stringify([t.name, t.key, t.columns.map((c) => c.name)]);
    let s = this.prepared.get(id);
    if (!s) {
      const db = this.store.db;
      const table = quoteIdent(t.name);
      const cols = t.columns.map((c) => quoteIdent(c.name)).join(", ");
      const key = t.key.map(quoteIdent);
      const order = key.join(", ");
      // `IS` so a NULL key part (a legacy non-INTEGER key allows one) still finds its row.
      const match = key.map((k) => `${k} IS ?`).join(" AND ");
      const tuple = `(${order}) > (${key.map(() => "?").join(", ")})`;
      const raw = (sql: string) => db.prepare(sql).raw(true).safeIntegers(true);
      s = {
        all: raw(`SELECT ${cols} FROM ${table}`),
        byKey: raw(`SELECT ${cols} FROM ${table} WHERE ${match}`),
        first: raw(`SELECT ${cols} FROM ${table} ORDER BY ${order} LIMIT ?`),
        after: raw(`SELECT ${cols} FROM ${table} WHERE ${tuple} ORDER BY ${order} LIMIT ?`),
        count: db.prepare(`SELECT count(*) FROM ${table}`).pluck().safeIntegers(true),
      };
      this.prepared.set(id, s);
    }
    return s;
  }
}

/** Whether the table's SQL has `json_valid(<column>)`, the name bare or quoted any of SQLite's ways. */
function checksJson(sql: string, column: string): boolean {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const names = [`"${column.replaceAll('"', '""')}"`, `\`${column}\``, `[${column}]`, column].map(esc);
  return new RegExp(`json_valid\\s*\\(\\s*(?:${names.join("|")})\\s*\\)`, "i").test(sql);
}

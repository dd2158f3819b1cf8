/**
 * CopyJob: what a target's `copy` is given for a full push — the tables to
 * build (tracked ones, and untracked ones with --all-tables), their indexes,
 * the views (--with-views), the rows read from one snapshot of the local
 * file, and the hook run at the swap — with the SQL every dialect shares
 * for indexes and views.
 *
 * Contract: a target builds the new tables, fills them, creates the indexes,
 * swaps them in place of the old ones, creates the views, runs `afterSwap`,
 * and records `key` in its history, all in one transaction: a reader sees
 * the old tables whole until the commit, then the new ones whole; a failure
 * or a crash anywhere leaves the old state and no history row. An index or a
 * view the target cannot take is skipped with a warning (`warn`), never a
 * silent loss, and never a failed push. Index and view definitions come from
 * the local database's own schema (`sqlite_schema`), never from a user's
 * argument; PostgreSQL gets indexes rebuilt from their structure and views
 * as their SELECT text, which it may refuse (docs/architecture.md, "Remote
 * full push").
 */

import { quoteIdent } from "../replica/schema.js";
import type { SqlValue } from "../replica/values.js";
import type { TableSchema } from "./payload.js";

export interface IndexColumn {
  name: string;
  desc: boolean;
  /** SQLite's collation name; BINARY is the default. */
  collate: string;
}

export interface IndexSpec {
  name: string;
  table: string;
  unique: boolean;
  /** Plain columns in index order; null when the index has an expression. */
  columns: IndexColumn[] | null;
  /** True for an index with a WHERE clause. */
  partial: boolean;
  /** SQLite's text of the index (null for a UNIQUE constraint's automatic index). */
  sql: string | null;
}

export interface ViewSpec {
  name: string;
  /** SQLite's CREATE VIEW text. */
  sql: string;
}

/** Runs one statement in the copy's transaction (parameters are bound, never spliced). */
export type RunSql = (sql: string) => Promise<void>;

/**
 * Called inside the swap transaction once the new tables (and views) are in
 * place, before the history row and the commit: the one place where
 * anything attached to the target's tables (capture triggers) is installed
 * again, since the new tables are new objects. On a `sqlite:` target the
 * local file is attached as `tw_source` while it runs: qualify the target's
 * objects as `main.…` (an unqualified name missing from main would find the
 * source's).
 */
export type SwapHook = (run: RunSql, tables: TableSchema[], dialect: "sqlite" | "postgres") => Promise<void>;

export interface CopyJob {
  /** The full push's sync key and ULID name, recorded in the target's history at the commit. */
  key: string;
  name: string;
  /** Every table to build, in creation order; a table with an empty key has no primary key. */
  tables: TableSchema[];
  indexes: IndexSpec[];
  views: ViewSpec[];
  /** The table's rows (in the schema's column order) in batches of at most `size`; progress is reported as they are taken. */
  rows(t: TableSchema, size: number): Iterable<SqlValue[][]>;
  /**
   * The local database file, for a target that can read it itself (a
   * `sqlite:` file ATTACHes it and copies by INSERT … SELECT); null for an
   * in-memory database. Such a target reports its progress with `progress`.
   */
  sourceFile: string | null;
  /** Rows per batch and per progress report (RemoteSyncOptions.chunkRows). */
  chunkRows: number;
  progress(t: TableSchema, rows: number): void;
  afterSwap: SwapHook;
  warn(message: string): void;
  /**
   * PostgreSQL: the table with column types chosen from its data (targets/postgres-plan.ts),
   * for when a value does not fit the types `tables` gives (those of the
   * declarations and overrides); fallbacks are reported to the cycle.
   */
  retype?(t: TableSchema): TableSchema;
}

/** SQLite's limit on a statement's parameters (32766) with room to spare. */
const SQLITE_PARAMS = 32_000;

/** Rows per multi-row INSERT for a table of `columns` columns: large statements, prepared once. */
export function rowsPerInsert(columns: number, cap = 256): number {
  return Math.max(1, Math.min(cap, Math.floor(SQLITE_PARAMS / Math.max(1, columns))));
}

/** `INSERT INTO t (cols) VALUES (?, …), …` for `rows` rows. */
export function insertSql(table: string, t: TableSchema, rows: number): string {
  const one = `(${t.columns.map(() => "?").join(", ")})`;
  return `INSERT INTO ${table} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) VALUES ${Array(rows).fill(one).join(", ")}`;
}

/** An index's columns that the pushed table lacks (an index on an untracked column cannot be built). */
export function missingColumns(ix: IndexSpec, t: TableSchema): string[] {
  const have = new Set(t.columns.map((c) => c.name));
  return (ix.columns ?? []).map((c) => c.name).filter((n) => !have.has(n));
}

/** The SQLite text of an index: its own, or rebuilt for a UNIQUE constraint's automatic index. */
export function sqliteIndexSql(ix: IndexSpec): string {
  if (ix.sql !== null) return ix.sql;
  const cols = (ix.columns ?? []).map(
    (c) => `${quoteIdent(c.name)}${c.collate.toUpperCase() === "BINARY" ? "" : ` COLLATE ${c.collate}`}`,
  );
  return `CREATE UNIQUE INDEX ${quoteIdent(ix.name)} ON ${quoteIdent(ix.table)} (${cols.join(", ")})`;
}

/**
 * The PostgreSQL form of an index on `table` (already qualified), or why it
 * has none: expressions and WHERE clauses are SQLite SQL, and a collation
 * other than BINARY and NOCASE has no PostgreSQL counterpart. NOCASE becomes
 * lower(column), which matches SQLite's ASCII-only folding for ASCII text.
 */
export function pgIndexSql(ix: IndexSpec, table: string): { sql: string } | { skip: string } {
  if (ix.columns === null) return { skip: "it indexes an expression, which is SQLite SQL" };
  if (ix.partial) return { skip: "it has a WHERE clause, which is SQLite SQL" };
  const parts: string[] = [];
  for (const c of ix.columns) {
    const coll = c.collate.toUpperCase();
    if (coll !== "BINARY" && coll !== "NOCASE")
      return { skip: `column ${c.name} uses the collation ${c.collate}, which PostgreSQL lacks` };
    const col = coll === "NOCASE" ? `lower(${quoteIdent(c.name)})` : quoteIdent(c.name);
    parts.push(`${col}${c.desc ? " DESC" : ""}`);
  }
  return {
    sql: `CREATE ${ix.unique ? "UNIQUE " : ""}INDEX ${quoteIdent(ix.name)} ON ${table} (${parts.join(", ")})`,
  };
}

/**
 * A view's column list (if any) and its SELECT, split from SQLite's CREATE
 * VIEW text at the first AS outside quotes and brackets, for a target that
 * names the view itself (PostgreSQL, in its schema).
 */
export function viewBody(sql: string): { columns: string; select: string } | null {
  let depth = 0;
  let i = 0;
  let nameEnd = -1;
  const head = /^\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?/i.exec(sql);
  if (!head) return null;
  i = head[0].length;
  while (i < sql.length) {
    const ch = sql[i]!;
    if (ch === '"' || ch === "'" || ch === "`" || ch === "[") {
      const close = ch === "[" ? "]" : ch;
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === close) {
          if (close !== "]" && sql[j + 1] === close) j += 2;
          else break;
        } else j++;
      }
      i = j + 1;
      continue;
    }
    if (ch === "(") {
      if (depth === 0 && nameEnd < 0) nameEnd = i;
      depth++;
    } else if (ch === ")") depth--;
    else if (depth === 0 && /\s/.test(ch) && /^\s+AS\s/i.test(sql.slice(i, i + 5))) {
      const after = sql.slice(i).replace(/^\s+AS\s+/i, "");
      const columns = nameEnd >= 0 ? sql.slice(nameEnd, i).trim() : "";
      return { columns, select: after };
    }
    i++;
  }
  return null;
}

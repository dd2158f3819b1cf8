/**
 * Dialect: how a payload becomes SQL for a target — SQLite's (files, libSQL,
 * D1) or PostgreSQL's.
 *
 * Contract: every statement is idempotent (DROP … IF EXISTS, CREATE, upsert
 * by key, delete by key), so applying a payload twice leaves the same rows.
 * Names reach SQL only through `quoteIdent`; values only through the
 * caller's `bind`, which returns a placeholder (and keeps the value as a
 * parameter) or, for D1's --file, the value's SQL literal. No text a user
 * gave ever becomes SQL otherwise: column types are chosen from the
 * column's affinity (SQLite) or parsed into targets/postgres-types.ts's grammar and
 * rendered from it (PostgreSQL), never copied from a declaration.
 */

import { quoteIdent } from "../replica/schema.js";
import type { SqlValue } from "../replica/values.js";
import type { Affinity, ColumnSchema, Payload, TableSchema } from "./payload.js";
import {
  ANY_COMMENT,
  declaredTypes,
  type PgType,
  parsePgType,
  renderPgType,
} from "./targets/postgres-types.js";
import { sqlLiteral } from "./values.js";

export type Dialect = "sqlite" | "postgres";

export const HISTORY_TABLE = "_tidewire_sync_history";

/** Returns the text that stands for `value` in the statement being built. */
export type Bind = (value: SqlValue) => string;

export interface Renderer {
  dialect: Dialect;
  /** A table's qualified, quoted name. */
  table(name: string): string;
  /** A fresh binder per statement (placeholders number from 1 in each). */
  binder(): { bind: Bind; params: SqlValue[] };
}

export interface Statement {
  sql: string;
  params: SqlValue[];
  /** The table a row statement writes, and how: its parameters are whole rows or keys. */
  table?: string;
  kind: "ddl" | "upsert" | "delete";
}

/** Parameters per statement: under SQLite's 32766 and PostgreSQL's 65535. */
const MAX_PARAMS = 30_000;
const MAX_ROWS = 500;

/** SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1). */
export function affinityOf(declared: string): { affinity: Affinity; untyped: boolean } {
  const t = declared.toUpperCase();
  if (t.includes("INT")) return { affinity: "INTEGER", untyped: false };
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT"))
    return { affinity: "TEXT", untyped: false };
  if (t.includes("BLOB") || t.trim() === "") return { affinity: "BLOB", untyped: t.trim() === "" };
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB"))
    return { affinity: "REAL", untyped: false };
  return { affinity: "NUMERIC", untyped: false };
}

/**
 * The column type on the target. SQLite targets get the affinity's own name
 * ("INT", not "INTEGER", so a one-column key never becomes a rowid alias that
 * would refuse the text an INT key column may hold). PostgreSQL gets the type
 * the full push chose from the data (`pg`), or else the declared type's
 * mapping (docs/architecture.md, "Remote push").
 */
export function columnType(c: ColumnSchema, dialect: Dialect): string {
  if (dialect === "sqlite") {
    if (c.untyped) return "";
    return c.affinity === "INTEGER" ? "INT" : c.affinity;
  }
  return renderPgType(pgColumnType(c));
}

export function pgColumnType(c: ColumnSchema): PgType {
  if (c.pg === undefined) return declaredTypes(c)[0]!;
  const t = parsePgType(c.pg);
  if (!t)
    throw new Error(
      `column ${JSON.stringify(c.name)} has the unknown PostgreSQL type ${JSON.stringify(c.pg)}`,
    );
  return t;
}

/** The table; with `withKey` false (or no key: an untracked table may have none) without its primary key. */
export function createTableSql(t: TableSchema, r: Renderer, withKey = true): string {
  const cols = t.columns.map((c) => `${quoteIdent(c.name)} ${columnType(c, r.dialect)}`.trimEnd());
  if (withKey && t.key.length > 0) cols.push(`PRIMARY KEY (${t.key.map(quoteIdent).join(", ")})`);
  return `CREATE TABLE ${r.table(t.name)} (${cols.join(", ")})`;
}

/** PostgreSQL: marks each `any` column, so the catalog tells it from a plain jsonb column. */
export function anyComments(t: TableSchema, r: Renderer): string[] {
  if (r.dialect !== "postgres") return [];
  return t.columns
    .filter((c) => pgColumnType(c).kind === "any")
    .map((c) => `COMMENT ON COLUMN ${r.table(t.name)}.${quoteIdent(c.name)} IS ${sqlLiteral(ANY_COMMENT)}`);
}

export function dropTableSql(t: TableSchema, r: Renderer): string {
  return `DROP TABLE IF EXISTS ${r.table(t.name)}`;
}

/** The payload's statements in order: resets, then per table its deletes and its upserts. */
export function renderPayload(p: Payload, r: Renderer): Statement[] {
  const out: Statement[] = [];
  for (const t of p.reset) {
    out.push({ sql: dropTableSql(t, r), params: [], kind: "ddl" });
    out.push({ sql: createTableSql(t, r), params: [], kind: "ddl" });
    for (const sql of anyComments(t, r)) out.push({ sql, params: [], kind: "ddl" });
  }
  const byTable = new Map<string, { upserts: SqlValue[][]; deletes: SqlValue[][] }>();
  for (const m of p.mutations) {
    let g = byTable.get(m.table);
    if (!g) {
      g = { upserts: [], deletes: [] };
      byTable.set(m.table, g);
    }
    if (m.op === "upsert") g.upserts.push(m.row);
    else g.deletes.push(m.key);
  }
  const schemas = new Map(p.tables.map((t) => [t.name, t]));
  for (const [name, g] of byTable) {
    const t = schemas.get(name);
    if (!t) throw new Error(`payload mutates table ${JSON.stringify(name)} without its schema`);
    const perDelete = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_PARAMS / t.key.length)));
    for (let i = 0; i < g.deletes.length; i += perDelete) {
      out.push(deleteSql(t, g.deletes.slice(i, i + perDelete), r));
    }
    const perUpsert = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_PARAMS / t.columns.length)));
    for (let i = 0; i < g.upserts.length; i += perUpsert) {
      out.push(upsertSql(t, g.upserts.slice(i, i + perUpsert), r));
    }
  }
  return out;
}

/**
 * PostgreSQL's form of an upsert: one array parameter per column, spread by
 * unnest, so a statement of any number of rows has as many parameters as the
 * table has columns and PostgreSQL parses one short text, whatever the rows.
 * `types` are the columns' types on the target, in the schema's order.
 */
export function unnestUpsertSql(t: TableSchema, r: Renderer, types: PgType[]): string {
  const { bind } = r.binder();
  const arrays = types.map((type) => `${bind(null)}::${renderPgType(type)}[]`);
  return `INSERT INTO ${r.table(t.name)} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) SELECT * FROM unnest(${arrays.join(", ")}) ${conflictAction(t)}`;
}

function conflictAction(t: TableSchema): string {
  const keys = new Set(t.key);
  const rest = t.columns.filter((c) => !keys.has(c.name)).map((c) => quoteIdent(c.name));
  const action = rest.length
    ? `DO UPDATE SET ${rest.map((c) => `${c} = excluded.${c}`).join(", ")}`
    : "DO NOTHING";
  return `ON CONFLICT (${t.key.map(quoteIdent).join(", ")}) ${action}`;
}

function upsertSql(t: TableSchema, rows: SqlValue[][], r: Renderer): Statement {
  const { bind, params } = r.binder();
  const values = rows.map((row) => `(${t.columns.map((_, i) => bind(row[i] ?? null)).join(", ")})`);
  const sql =
    `INSERT INTO ${r.table(t.name)} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) ` +
    `VALUES ${values.join(", ")} ${conflictAction(t)}`;
  return { sql, params, table: t.name, kind: "upsert" };
}

function deleteSql(t: TableSchema, keys: SqlValue[][], r: Renderer): Statement {
  const { bind, params } = r.binder();
  const match = keys.map(
    (key) => `(${t.key.map((k, i) => `${quoteIdent(k)} = ${bind(key[i] ?? null)}`).join(" AND ")})`,
  );
  return {
    sql: `DELETE FROM ${r.table(t.name)} WHERE ${match.join(" OR ")}`,
    params,
    table: t.name,
    kind: "delete",
  };
}

/** The history table and the three statements on it, for a dialect. */
export function historySql(r: Renderer) {
  const h = r.table(HISTORY_TABLE);
  const at = r.dialect === "postgres" ? "timestamptz" : "TEXT";
  const p = r.dialect === "postgres" ? ["$1", "$2", "$3", "$4"] : ["?", "?", "?", "?"];
  return {
    create: `CREATE TABLE IF NOT EXISTS ${h} (sync_key TEXT PRIMARY KEY, sync_name TEXT NOT NULL, sync_at ${at} NOT NULL, sync_mode TEXT NOT NULL)`,
    /** Records the key, or returns no row when it is already there: the check and the write in one statement. */
    claim: `INSERT INTO ${h} (sync_key, sync_name, sync_at, sync_mode) VALUES (${p.join(", ")}) ON CONFLICT (sync_key) DO NOTHING RETURNING sync_key`,
    /** Keeps the newest N (ULID names sort by time). */
    prune: `DELETE FROM ${h} WHERE sync_name NOT IN (SELECT sync_name FROM ${h} ORDER BY sync_name DESC LIMIT ${p[0]})`,
    seen: `SELECT 1 AS seen FROM ${h} WHERE sync_key = ${p[0]}`,
  };
}

/**
 * The renderer for SQLite-dialect targets that bind parameters. With
 * `inlineInfinities`, an infinite REAL is written as a literal instead (libSQL
 * refuses to bind one; SQLite reads the literal 9e999 as infinity).
 */
export function sqliteRenderer(options: { inlineInfinities?: boolean } = {}): Renderer {
  return {
    dialect: "sqlite",
    table: quoteIdent,
    binder() {
      const params: SqlValue[] = [];
      return {
        params,
        bind: (v) => {
          if (options.inlineInfinities && typeof v === "number" && !Number.isFinite(v)) return sqlLiteral(v);
          params.push(v);
          return "?";
        },
      };
    },
  };
}

/**
 * SQLite-dialect targets: the marker an apply holds for the length of its
 * transaction, so the capture triggers (targets/sqlite-capture.ts) do not record
 * Tidewire's own writes as edits made on the target. Another connection never
 * sees it: it is written and deleted inside the one write transaction.
 */
export const APPLYING_TABLE = "_tidewire_applying";

export function applyingSql() {
  const t = quoteIdent(APPLYING_TABLE);
  return {
    create: `CREATE TABLE IF NOT EXISTS ${t} (id INTEGER PRIMARY KEY)`,
    set: `INSERT OR IGNORE INTO ${t} (id) VALUES (1)`,
    clear: `DELETE FROM ${t}`,
  };
}

/**
 * SqliteCapture: capture on SQLite-dialect targets (SQLite files, libSQL,
 * D1), in plain SQL triggers any client's write fires, through a
 * `SqlRunner` each adapter provides over its own connection.
 *
 * Contract: three triggers per table (`_tidewire_ins|upd|del_<table>`) append
 * to `_tidewire_changes` unless `_tidewire_applying` holds the marker of
 * Tidewire's own apply. Keys and values travel as SQLite's quote() text
 * (capture.ts `fromQuoted`), so every driver returns them exactly. Only
 * built-in functions (json_array, quote, julianday) are used. `install`
 * compares each trigger's stored text with the one it would create and
 * replaces only those that differ (a table gained a column, or was
 * recreated by a full push), in one transaction; when nothing differs it
 * is two reads. Values reach the SQL only through `sqlLiteral`, names only
 * through `quoteIdent`, so one text works for runners that bind nothing
 * (wrangler's --command).
 */

import { quoteIdent } from "../../replica/schema.js";
import type { SqlValue } from "../../replica/values.js";
import type { Capture, CapturedChange } from "../capture.js";
import { CHANGES_TABLE, fromQuoted, keyText } from "../capture.js";
import type { TableSchema } from "../payload.js";
import { APPLYING_TABLE, applyingSql } from "../sql.js";
import { sqlLiteral } from "../values.js";

/**
 * One connection's way to run SQL text: reads (each statement's rows as
 * arrays, in one round trip where the target allows: wrangler starts a
 * process per call), or writes as one transaction.
 */
export interface SqlRunner {
  query(sql: string[]): Promise<unknown[][][]>;
  batch(sql: string[]): Promise<void>;
}

const NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";
const KEYS_PER_READ = 200;
const changes = quoteIdent(CHANGES_TABLE);

const CREATE_CHANGES = `CREATE TABLE IF NOT EXISTS ${changes} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, pk TEXT NOT NULL, op TEXT NOT NULL, cols TEXT, at INTEGER NOT NULL)`;

/** The target's tables and capture triggers (D1 refuses pragma functions, so columns are a second read). */
const SCHEMA = `SELECT type, name, sql FROM sqlite_schema WHERE type = 'table' OR (type = 'trigger' AND name LIKE '\\_tidewire\\_%' ESCAPE '\\')`;

export function triggerName(kind: "ins" | "upd" | "del", table: string): string {
  return `_tidewire_${kind}_${table}`;
}

/** The CREATE TRIGGER texts capturing `table` (key `key`, columns `columns`), by trigger name. */
export function captureTriggers(table: string, key: string[], columns: string[]): Map<string, string> {
  const t = quoteIdent(table);
  const name = sqlLiteral(table);
  const when = `WHEN NOT EXISTS (SELECT 1 FROM ${quoteIdent(APPLYING_TABLE)})`;
  const pk = (row: "NEW" | "OLD") =>
    `json_array(${key.map((k) => `quote(${row}.${quoteIdent(k)})`).join(", ")})`;
  const entry = (row: "NEW" | "OLD", op: string, cols: string) =>
    `INSERT INTO ${changes} (tbl, pk, op, cols, at) SELECT ${name}, ${pk(row)}, '${op}', ${cols}, ${NOW_MS}`;
  const same = key.map((k) => `NEW.${quoteIdent(k)} IS OLD.${quoteIdent(k)}`).join(" AND ");
  const changed = `json_array(${columns
    .map((c) => `CASE WHEN OLD.${quoteIdent(c)} IS NOT NEW.${quoteIdent(c)} THEN ${sqlLiteral(c)} END`)
    .join(", ")})`;
  const differs = columns.map((c) => `OLD.${quoteIdent(c)} IS NOT NEW.${quoteIdent(c)}`).join(" OR ");
  const trigger = (kind: "ins" | "upd" | "del", event: string, body: string[]) =>
    `CREATE TRIGGER ${quoteIdent(triggerName(kind, table))} AFTER ${event} ON ${t} ${when} BEGIN ${body.map((s) => `${s};`).join(" ")} END`;
  return new Map([
    [triggerName("ins", table), trigger("ins", "INSERT", [entry("NEW", "insert", "NULL")])],
    [
      triggerName("upd", table),
      trigger("upd", "UPDATE", [
        `${entry("NEW", "update", changed)} WHERE (${same}) AND (${differs || "0"})`,
        `${entry("OLD", "delete", "NULL")} WHERE NOT (${same})`,
        `${entry("NEW", "insert", "NULL")} WHERE NOT (${same})`,
      ]),
    ],
    [triggerName("del", table), trigger("del", "DELETE", [entry("OLD", "delete", "NULL")])],
  ]);
}

export class SqliteCapture implements Capture {
  constructor(private readonly run: SqlRunner) {}

  async install(tables: TableSchema[]): Promise<Map<string, string[]>> {
    const [schema] = (await this.run.query([SCHEMA])) as [[string, string, string][]];
    const present = new Set(schema.filter((r) => r[0] === "table").map((r) => r[1]));
    const stored = new Map(schema.filter((r) => r[0] === "trigger").map((r) => [r[1], r[2]]));
    const wanted = tables.filter((t) => present.has(t.name));
    const info = wanted.length
      ? await this.run.query(wanted.map((t) => `PRAGMA table_info(${quoteIdent(t.name)})`))
      : [];
    const out = new Map<string, string[]>();
    const ddl: string[] = [];
    if (!present.has(CHANGES_TABLE)) ddl.push(CREATE_CHANGES);
    if (!present.has(APPLYING_TABLE)) ddl.push(applyingSql().create);
    for (const [i, t] of wanted.entries()) {
      // table_info's rows: cid, name, type, notnull, dflt_value, pk.
      const remote = (info[i] ?? []).map((r) => String(r[1]));
      const have = new Set(remote);
      if (!t.key.every((k) => have.has(k))) continue;
      const columns = t.columns.map((c) => c.name).filter((c) => have.has(c));
      out.set(t.name, columns);
      // Every column the target has is watched, so an edit the local table cannot hold yet still arrives.
      for (const [name, sql] of captureTriggers(t.name, t.key, remote)) {
        if (stored.get(name) === sql) continue;
        ddl.push(`DROP TRIGGER IF EXISTS ${quoteIdent(name)}`, sql);
      }
    }
    if (ddl.length) await this.run.batch(ddl);
    return out;
  }

  async read(after: bigint, limit: number): Promise<CapturedChange[]> {
    const [rows] = await this.run.query([
      `SELECT seq, tbl, pk, op, cols, at FROM ${changes} WHERE seq > ${sqlLiteral(after)} ORDER BY seq LIMIT ${sqlLiteral(BigInt(limit))}`,
    ]);
    return (rows ?? []).map(([seq, tbl, pk, op, cols, at]) => ({
      seq: BigInt(seq as bigint | number | string),
      table: String(tbl),
      key: (JSON.parse(String(pk)) as string[]).map(fromQuoted),
      op: op as CapturedChange["op"],
      columns:
        cols === null || cols === undefined
          ? null
          : (JSON.parse(String(cols)) as Array<string | null>).filter((c): c is string => c !== null),
      at: Number(at),
    }));
  }

  async rows(t: TableSchema, columns: string[], keys: SqlValue[][]): Promise<Array<SqlValue[] | null>> {
    const found = new Map<string, SqlValue[]>();
    const keyCols = `(${t.key.map(quoteIdent).join(", ")})`;
    // Aliased: a key column is also among `columns`, and D1 returns rows as objects by name.
    const select = [...t.key, ...columns].map((c, i) => `quote(${quoteIdent(c)}) AS c${i}`).join(", ");
    const reads: string[] = [];
    for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
      const list = keys
        .slice(i, i + KEYS_PER_READ)
        .map((k) => `(${k.map(sqlLiteral).join(", ")})`)
        .join(", ");
      reads.push(`SELECT ${select} FROM ${quoteIdent(t.name)} WHERE ${keyCols} IN (VALUES ${list})`);
    }
    for (const rows of reads.length ? await this.run.query(reads) : []) {
      for (const r of rows) {
        const values = r.map(fromQuoted);
        found.set(keyText(values.slice(0, t.key.length)), values.slice(t.key.length));
      }
    }
    return keys.map((k) => found.get(keyText(k)) ?? null);
  }

  async prune(upto: bigint): Promise<void> {
    await this.run.batch([`DELETE FROM ${changes} WHERE seq <= ${sqlLiteral(upto)}`]);
  }
}

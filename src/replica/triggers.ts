/**
 * Capture: the triggers that record every write to a tracked table in the
 * change log, in the writer's own transaction, whichever client wrote.
 *
 * Contract: plain SQL only (no custom functions, nothing newer than SQLite
 * 3.40), so the `sqlite3` shell and Python are captured like the app. Each row
 * event ticks the clock once (a key change is two events: a tombstone for the
 * old key, an insert for the new) and upserts clocks, never values: a value
 * lives in the table and is read from there when the change is served
 * (cr-sqlite's clock tables do the same). An insert writes only the row entry
 * (column "", value 1), which stands for every column it wrote, and drops the
 * key's column entries, being older; an update upserts an entry per column
 * whose value or storage class changed; a delete writes the tombstone
 * (column "", value 0) and drops the key's column entries. Nothing is
 * captured while `tw_clock.suppress` is set, which only the applier does,
 * inside its own transaction. Keys that have no canonical form (NULL, or in a
 * composite key REAL or text holding U+0000) abort the write.
 */
import type Database from "better-sqlite3";
import { SQL_TICK } from "./hlc.js";
import { quoteIdent, quoteText, type TableInfo } from "./schema.js";

/** The row entry's column name, and its values: the row exists, or was deleted. */
export const ROW = "";
export const ALIVE = 1;
export const DELETED = 0;

/** SQLite allows 500 arms in a compound SELECT; stay well below. */
const ARMS_PER_STATEMENT = 400;

const UPSERT =
  "ON CONFLICT (tbl, pk, col) DO UPDATE SET val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq";

/** The stored key of the NEW or OLD row, as `encodeKey` computes it in JS. */
export function keyExpr(t: TableInfo, row: "NEW" | "OLD"): string {
  // Unary + strips the column's affinity, so the comparison with the log's
  // untyped pk column can use the index (and converts nothing).
  if (t.pk.length === 1) return `+${row}.${quoteIdent(t.pk[0]!)}`;
  return t.pk.map((c) => `quote(${row}.${quoteIdent(c)})`).join(" || ',' || ");
}

function guard(t: TableInfo): string {
  const bad: string[] = [];
  for (const c of t.pk) {
    const col = `NEW.${quoteIdent(c)}`;
    if (!t.rowidAlias && !t.withoutRowid) bad.push(`${col} IS NULL`);
    if (t.pk.length > 1) bad.push(`(typeof(${col}) = 'text' AND instr(${col}, char(0)) > 0)`);
  }
  for (const c of t.keyMayHoldReal) bad.push(`typeof(NEW.${quoteIdent(c)}) = 'real'`);
  if (bad.length === 0) return "";
  const message = `tidewire: a key of tracked table ${t.name} must not be NULL${
    t.pk.length > 1 ? ", REAL or contain U+0000" : ""
  }`;
  return `SELECT RAISE(ABORT, ${quoteText(message)}) WHERE ${bad.join(" OR ")};`;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Rows as a compound SELECT; the first arm names the columns. */
function compound(rows: string[][], names: string[]): string {
  return rows
    .map((cells, i) => `SELECT ${cells.map((c, j) => (i === 0 ? `${c} AS ${names[j]}` : c)).join(", ")}`)
    .join(" UNION ALL ");
}

/** The clock entries of an UPDATE: one per column whose value or storage class changed. */
function logUpdate(id: number, t: TableInfo): string {
  const rows = t.columns.map((c) => {
    const n = `NEW.${quoteIdent(c)}`;
    const o = `OLD.${quoteIdent(c)}`;
    // COLLATE BINARY: under the column's own collation 'a' and 'A' may be "equal".
    return [quoteText(c), `(${n} IS NOT ${o} COLLATE BINARY OR typeof(${n}) <> typeof(${o}))`];
  });
  return chunks(rows, ARMS_PER_STATEMENT)
    .map(
      (part) => `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq)
    SELECT ${id}, ${keyExpr(t, "NEW")}, v.col, NULL, c.hlc, c.node, c.seq
    FROM tw_clock AS c, (${compound(part, ["col", "ch"])}) AS v WHERE v.ch
    ${UPSERT};`,
    )
    .join("\n  ");
}

/**
 * The key's row entry (`alive`: an insert, else a tombstone), after dropping
 * its column entries: the event is newer than all of them.
 */
function logRow(id: number, t: TableInfo, row: "NEW" | "OLD", alive: boolean): string {
  const key = keyExpr(t, row);
  return `DELETE FROM tw_log WHERE tbl = ${id} AND pk = ${key} AND col > '';
  INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq)
    SELECT ${id}, ${key}, ${quoteText(ROW)}, ${alive ? ALIVE : DELETED}, c.hlc, c.node, c.seq FROM tw_clock AS c WHERE true
    ${UPSERT};`;
}

function keyUnchanged(t: TableInfo): string {
  return t.pk.map((c) => `NEW.${quoteIdent(c)} IS OLD.${quoteIdent(c)} COLLATE BINARY`).join(" AND ");
}

export function triggerNames(id: number): string[] {
  return ["insert", "update", "rekey", "delete"].map((kind) => `tw_${id}_${kind}`);
}

/** The CREATE TRIGGER statements that capture table `t`, tracked as `id`. */
export function captureTriggers(id: number, t: TableInfo): string[] {
  const table = quoteIdent(t.name);
  const on = "(SELECT suppress FROM tw_clock) = 0";
  const [ins, upd, rekey, del] = triggerNames(id).map(quoteIdent) as [string, string, string, string];
  const out = [
    `CREATE TRIGGER ${ins} AFTER INSERT ON ${table} WHEN ${on} BEGIN
  ${guard(t)}
  ${SQL_TICK}
  ${logRow(id, t, "NEW", true)}
END`,
    `CREATE TRIGGER ${rekey} AFTER UPDATE ON ${table} WHEN ${on} AND NOT (${keyUnchanged(t)}) BEGIN
  ${guard(t)}
  ${SQL_TICK}
  ${logRow(id, t, "OLD", false)}
  ${SQL_TICK}
  ${logRow(id, t, "NEW", true)}
END`,
    `CREATE TRIGGER ${del} AFTER DELETE ON ${table} WHEN ${on} BEGIN
  ${SQL_TICK}
  ${logRow(id, t, "OLD", false)}
END`,
  ];
  if (t.columns.length > 0) {
    out.push(`CREATE TRIGGER ${upd} AFTER UPDATE ON ${table} WHEN ${on} AND ${keyUnchanged(t)} BEGIN
  ${SQL_TICK}
  ${logUpdate(id, t)}
END`);
  }
  return out;
}

/** Drops every capture trigger tidewire made on `table`, whatever id it had then. */
export function dropCaptureTriggers(db: Database.Database, table: string): void {
  const names = db
    .prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? AND name GLOB 'tw_[0-9]*_*'",
    )
    .pluck()
    .all(table) as string[];
  for (const name of names) db.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(name)}`);
}

export function installCaptureTriggers(db: Database.Database, id: number, t: TableInfo): void {
  dropCaptureTriggers(db, t.name);
  for (const sql of captureTriggers(id, t)) db.exec(sql);
}

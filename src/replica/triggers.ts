/**
 * Capture: the triggers that record every write to a tracked table, in the
 * writer's own transaction, whichever client wrote.
 *
 * Contract: plain SQL only (no custom functions, nothing newer than SQLite
 * 3.40), so the `sqlite3` shell and Python are captured like the app. A
 * trigger only appends its row events to `tw_pending` (see migration 8), in
 * capture order: the writer pays for one unindexed append, and `ingest.ts`
 * later turns them into the compacted log with the semantics stated there
 * and in log.ts. One row per event: an insert (kind 1), a delete (kind 0), an
 * update (kind 2); a key change is two: a tombstone for the old key, an
 * insert for the new. Triggers name the key columns and nothing else, so the
 * app's ALTER TABLE … ADD/RENAME/DROP COLUMN of other columns never meets
 * them; which columns an update changed, ingest finds against the row's
 * fingerprint (fingerprint.ts). Clocks are not written here: the event
 * keeps the time of the write (`julianday('now')`), from which ingest takes
 * its HLC. Values stay in the table. Nothing is captured while
 * `tw_clock.suppress` is set, which only the applier does, inside its own
 * transaction. Keys that have no canonical form (NULL, or in a composite key
 * REAL or text holding U+0000) abort the write.
 */
import type Database from "better-sqlite3";
import { SQL_NOW_JD } from "./hlc.js";
import { quoteIdent, quoteText, type TableInfo } from "./schema.js";

/** The row entry's column name, and its values: the row exists, or was deleted. */
export const ROW = "";
export const ALIVE = 1;
export const DELETED = 0;

/** The kind of a pending update (the others are ALIVE and DELETED). */
export const UPDATE = 2;

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

function pending(id: number, key: string, kind: number): string {
  return `INSERT INTO tw_pending (tbl, pk, kind, jd) VALUES (${id}, ${key}, ${kind}, ${SQL_NOW_JD});`;
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
  const [NEW, OLD] = [keyExpr(t, "NEW"), keyExpr(t, "OLD")];
  // UPDATE OF the key: a statement that sets no key column cannot change one,
  // and then SQLite does not even evaluate this trigger's WHEN.
  const keyCols = t.pk.map(quoteIdent).join(", ");
  const out = [
    `CREATE TRIGGER ${ins} AFTER INSERT ON ${table} WHEN ${on} BEGIN
  ${guard(t)}
  ${pending(id, NEW, ALIVE)}
END`,
    `CREATE TRIGGER ${rekey} AFTER UPDATE OF ${keyCols} ON ${table} WHEN ${on} AND NOT (${keyUnchanged(t)}) BEGIN
  ${guard(t)}
  ${pending(id, OLD, DELETED)}
  ${pending(id, NEW, ALIVE)}
END`,
    `CREATE TRIGGER ${del} AFTER DELETE ON ${table} WHEN ${on} BEGIN
  ${pending(id, OLD, DELETED)}
END`,
  ];
  // Always, even with no other column yet: ADD COLUMN must find capture ready.
  out.push(`CREATE TRIGGER ${upd} AFTER UPDATE ON ${table} WHEN ${on} AND ${keyUnchanged(t)} BEGIN
  ${pending(id, NEW, UPDATE)}
END`);
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

/**
 * Tables whose capture triggers predate key-only capture: direct capture
 * (they write tw_log themselves) or migration 8's masked updates.
 */
export function legacyCaptureTables(db: Database.Database): string[] {
  return db
    .prepare(
      `SELECT DISTINCT tbl_name FROM sqlite_schema
       WHERE type = 'trigger' AND name GLOB 'tw_[0-9]*_*'
         AND (sql NOT LIKE '%tw_pending%' OR sql LIKE '%, mask,%')`,
    )
    .pluck()
    .all() as string[];
}

export function installCaptureTriggers(db: Database.Database, id: number, t: TableInfo): void {
  dropCaptureTriggers(db, t.name);
  for (const sql of captureTriggers(id, t)) db.exec(sql);
}

export interface InstalledTrigger {
  name: string;
  /** The table SQLite says it is on (it follows ALTER TABLE … RENAME TO). */
  table: string;
  sql: string;
}

/** The capture triggers of tracked table `id`, as the schema holds them now. */
export function installedTriggers(db: Database.Database, id: number): InstalledTrigger[] {
  return db
    .prepare(
      "SELECT name, tbl_name AS 'table', sql FROM sqlite_schema WHERE type = 'trigger' AND name GLOB ? ORDER BY name",
    )
    .all(`tw_${id}_*`) as InstalledTrigger[];
}

/** Whether the installed triggers are exactly those `captureTriggers(id, t)` makes. */
export function triggersCurrent(installed: InstalledTrigger[], id: number, t: TableInfo): boolean {
  const want = captureTriggers(id, t);
  if (installed.length !== want.length) return false;
  const have = new Set(installed.filter((i) => i.table === t.name).map((i) => i.sql));
  return want.every((sql) => have.has(sql));
}

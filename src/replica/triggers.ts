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
 * update (kind 2, with the mask of the columns whose value or storage class
 * changed); a key change is two: a tombstone for the old key, an insert for
 * the new. Clocks are not written here: the event
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

/**
 * Columns per integer of an update's mask (bit 63 would make it negative),
 * and the decimal digits each integer takes in a wide table's text mask.
 */
export const MASK_BITS = 63;
export const MASK_DIGITS = 19;

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

/**
 * The mask of the columns an UPDATE changed: an integer, bit i for column i;
 * past MASK_BITS columns, text, each MASK_BITS columns' integer in
 * MASK_DIGITS digits. One row per event either way, so ingest can number
 * events by rowid. CASE, not OR: its WHEN stops at the first true test, so
 * the storage class of a column whose value changed is never read (measured:
 * 10% of an update).
 */
function mask(t: TableInfo): string {
  const words: string[] = [];
  for (let from = 0; from < t.columns.length; from += MASK_BITS) {
    const arms = t.columns.slice(from, from + MASK_BITS).map((c, i) => {
      const n = `NEW.${quoteIdent(c)}`;
      const o = `OLD.${quoteIdent(c)}`;
      // COLLATE BINARY: under the column's own collation 'a' and 'A' may be "equal".
      return `CASE WHEN ${n} IS NOT ${o} COLLATE BINARY OR typeof(${n}) <> typeof(${o}) THEN ${1n << BigInt(i)} ELSE 0 END`;
    });
    words.push(arms.join(" + "));
  }
  if (words.length === 1) return words[0] as string;
  return `printf('${`%0${MASK_DIGITS}d`.repeat(words.length)}', ${words.join(", ")})`;
}

function pending(id: number, key: string, kind: number, mask = "NULL"): string {
  return `INSERT INTO tw_pending (tbl, pk, kind, mask, jd) VALUES (${id}, ${key}, ${kind}, ${mask}, ${SQL_NOW_JD});`;
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
  if (t.columns.length > 0) {
    out.push(`CREATE TRIGGER ${upd} AFTER UPDATE ON ${table} WHEN ${on} AND ${keyUnchanged(t)} BEGIN
  ${pending(id, NEW, UPDATE, mask(t))}
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

/** Tables whose capture triggers predate staged capture: they write tw_log themselves. */
export function legacyCaptureTables(db: Database.Database): string[] {
  return db
    .prepare(
      `SELECT DISTINCT tbl_name FROM sqlite_schema
       WHERE type = 'trigger' AND name GLOB 'tw_[0-9]*_*' AND sql NOT LIKE '%tw_pending%'`,
    )
    .pluck()
    .all() as string[];
}

export function installCaptureTriggers(db: Database.Database, id: number, t: TableInfo): void {
  dropCaptureTriggers(db, t.name);
  for (const sql of captureTriggers(id, t)) db.exec(sql);
}

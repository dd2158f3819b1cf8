/**
 * TableInfo: what tidewire needs to know of an application table to track it,
 * read from SQLite's own catalogue, and the quoting that lets its names appear
 * in SQL.
 *
 * Contract: `readTable` returns the key columns in key order and the other
 * writable columns in table order (generated columns are left out: they are
 * computed, never written), or throws `NotTrackableError` saying why the table
 * cannot be tracked: it does not exist, is a view, virtual or tidewire's own,
 * has no explicit PRIMARY KEY, has a column named "", or has a composite key
 * with a REAL column. Names only ever reach SQL through `quoteIdent` (and
 * `quoteText` for names used as string literals); values never do.
 */
import type Database from "better-sqlite3";
import { TidewireError } from "../errors.js";

export class NotTrackableError extends TidewireError {
  constructor(
    readonly table: string,
    reason: string,
  ) {
    super(`table "${table}" cannot be tracked: ${reason}`, "ERR_NOT_TRACKABLE");
    this.name = "NotTrackableError";
  }
}

export interface TableInfo {
  name: string;
  /** Key columns, in key order. */
  pk: string[];
  /** The other captured columns, in table order. */
  columns: string[];
  /** A single INTEGER PRIMARY KEY of a rowid table: never NULL, always an integer. */
  rowidAlias: boolean;
  withoutRowid: boolean;
  /** Key columns whose affinity lets a REAL in (composite keys refuse REAL parts). */
  keyMayHoldReal: string[];
  /** Declared default of each column, as SQL text (null: none). */
  defaults: Map<string, string | null>;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteText(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** SQLite's affinity rules (datatype3.html, 3.1), from a declared type. */
export function affinity(declared: string): "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC" {
  const t = declared.toUpperCase();
  if (t.includes("INT")) return "INTEGER";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "TEXT";
  if (t.includes("BLOB") || t.trim() === "") return "BLOB";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "REAL";
  return "NUMERIC";
}

interface XInfo {
  name: string;
  type: string;
  notnull: number;
  dflt_value: string | null;
  pk: number;
  hidden: number;
}

export function readTable(db: Database.Database, name: string): TableInfo {
  const listed = db
    .prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?")
    .get(name) as { type: string; wr: number } | undefined;
  if (!listed) throw new NotTrackableError(name, "no such table");
  if (listed.type !== "table")
    throw new NotTrackableError(name, `it is a ${listed.type} table, not an ordinary one`);
  if (/^(tw_|sqlite_)/i.test(name)) throw new NotTrackableError(name, "it is an internal table");
  const cols = db.prepare("SELECT * FROM pragma_table_xinfo(?)").all(name) as XInfo[];
  const writable = cols.filter((c) => c.hidden === 0);
  const keyed = writable.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  if (keyed.length === 0) {
    throw new NotTrackableError(
      name,
      "it has no explicit PRIMARY KEY, and a rowid is not stable across replicas (VACUUM may renumber it); declare one",
    );
  }
  if (writable.some((c) => c.name === "")) throw new NotTrackableError(name, 'a column named "" is reserved');
  const withoutRowid = listed.wr === 1;
  const rowidAlias =
    !withoutRowid && keyed.length === 1 && (keyed[0]?.type ?? "").toUpperCase() === "INTEGER";
  if (keyed.length > 1) {
    const real = keyed.find((c) => affinity(c.type) === "REAL");
    if (real) {
      throw new NotTrackableError(
        name,
        `key column "${real.name}" is REAL, and SQLite versions print REALs differently, so a composite key holding one has no canonical form`,
      );
    }
  }
  return {
    name,
    pk: keyed.map((c) => c.name),
    columns: writable.filter((c) => c.pk === 0).map((c) => c.name),
    rowidAlias,
    withoutRowid,
    keyMayHoldReal:
      keyed.length > 1 ? keyed.filter((c) => affinity(c.type) !== "TEXT").map((c) => c.name) : [],
    defaults: new Map(writable.map((c) => [c.name, c.dflt_value])),
  };
}

/** The schema's version counter: it changes whenever any table's shape does. */
const versionStatements = new WeakMap<Database.Database, Database.Statement>();

export function schemaVersion(db: Database.Database): number {
  // Prepared once per connection: db.pragma() prepares anew on every call, and
  // this runs on every apply and every page served.
  let st = versionStatements.get(db);
  if (!st) {
    st = db.prepare("PRAGMA schema_version").pluck();
    versionStatements.set(db, st);
  }
  return st.get() as number;
}

/**
 * Evaluates a column's declared default, as `pragma table_xinfo` prints it.
 * The text is the schema's own, never a value from a change; null means the
 * column has no default (so it defaults to NULL).
 */
export function evalDefault(db: Database.Database, dflt: string | null): unknown {
  if (dflt === null) return null;
  return db.prepare(`SELECT ${dflt}`).pluck().safeIntegers(true).get();
}

/**
 * Materializer: writes the rows an applied batch merged into the
 * application's tables, and tells the applier what each written row now
 * holds, as its fingerprint (fingerprint.ts), so the log entry carries it.
 *
 * Contract: each touched row is written as the merged log says it is: a new
 * or re-inserted row whole, many rows per statement; a change to some columns
 * of an existing row as an UPDATE of those columns (an insert of them would
 * meet NOT NULL before ON CONFLICT); a row the table turns out to lack,
 * whole; a row the merge killed, deleted. `write` returns, for every live
 * written row of a tracked table, the fingerprint of the values written when
 * the table is known to hold exactly them — each value's storage class
 * survives its column's affinity, and no trigger of the application's or
 * foreign-key action can rewrite a row — and null when it must be read back
 * from the table after the write (`refreshFingerprints`): a fingerprint that
 * disagreed with the table would make ingest take the row for a local write.
 * Writes need capture suppressed by the caller's transaction.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import { fingerprint } from "./fingerprint.js";
import type { Entry } from "./log.js";
import { ALIVE_N, isLive, type RowState } from "./merge.js";
import { rowsOf } from "./rows.js";
import { affinity, schemaVersion } from "./schema.js";
import type { SqlValue } from "./values.js";

type Affinity = ReturnType<typeof affinity>;

/** A numeric literal SQLite's NUMERIC, INTEGER and REAL affinities would convert a text to. */
const NUMERIC_TEXT = /^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/;

/** Whether a column of this affinity stores the value as it is given (same class, same bytes). */
function keptAsIs(a: Affinity, v: SqlValue): boolean {
  if (v === null || typeof v === "object") return true; // NULL and BLOB are never converted
  if (a === "BLOB") return typeof v !== "number" || !Object.is(v, -0);
  if (typeof v === "string") return a === "TEXT" || !NUMERIC_TEXT.test(v);
  if (typeof v === "bigint") return a === "INTEGER" || a === "NUMERIC";
  // A REAL: SQLite keeps -0.0 as 0, and makes an integral one an INTEGER under INTEGER or NUMERIC.
  if (Object.is(v, -0) || !Number.isFinite(v)) return false;
  return a === "REAL" || ((a === "INTEGER" || a === "NUMERIC") && !Number.isInteger(v));
}

/** Per connection: whether, at this schema version, a write may be rewritten by the database itself. */
const rewriting = new WeakMap<Database.Database, { version: number; yes: boolean }>();
const affinities = new WeakMap<TrackedTable, Affinity[]>();

function mayRewrite(db: Database.Database): boolean {
  const v = schemaVersion(db);
  const known = rewriting.get(db);
  if (known?.version === v) return known.yes;
  // A trigger that is not tidewire's capture, or a foreign-key action (ON DELETE/UPDATE …
  // cascades, sets NULL or a default), can change a row after the applier wrote it.
  const yes =
    db
      .prepare(
        `SELECT EXISTS (SELECT 1 FROM sqlite_schema
           WHERE (type = 'trigger' AND name NOT GLOB 'tw_[0-9]*_*')
              OR (type = 'table' AND (sql LIKE '%ON DELETE%' OR sql LIKE '%ON UPDATE%')))`,
      )
      .pluck()
      .get() === 1;
  rewriting.set(db, { version: v, yes });
  return yes;
}

function affinitiesOf(db: Database.Database, t: TrackedTable): Affinity[] {
  let out = affinities.get(t);
  if (!out) {
    const types = new Map(
      (
        db.prepare("SELECT name, type FROM pragma_table_xinfo(?)").all(t.name) as Array<{
          name: string;
          type: string;
        }>
      ).map((c) => [c.name, c.type]),
    );
    out = t.columns.map((c) => affinity(types.get(c) ?? ""));
    affinities.set(t, out);
  }
  return out;
}

/** The fingerprint of `values` (a row's captured columns, in order) if the table stores them as given. */
function fingerprintAsWritten(db: Database.Database, t: TrackedTable, values: SqlValue[]): Buffer | null {
  const a = affinitiesOf(db, t);
  for (let i = 0; i < values.length; i++) if (!keptAsIs(a[i] as Affinity, values[i] as SqlValue)) return null;
  return fingerprint(values);
}

export class Materializer {
  constructor(private readonly db: Database.Database) {}

  /** Writes the rows (see the contract); returns the live written rows' fingerprints, null where unknown. */
  write(rows: RowState[]): Map<RowState, Buffer | null> {
    const db = this.db;
    const exact = !mayRewrite(db);
    const fps = new Map<RowState, Buffer | null>();
    const groups = new Map<TrackedTable, SqlValue[]>();
    const partial = new Map<
      string,
      { t: TrackedTable; names: string[]; states: RowState[]; flat: SqlValue[] }
    >();
    const whole = (s: RowState) => {
      let flat = groups.get(s.t);
      if (!flat) {
        flat = [];
        groups.set(s.t, flat);
      }
      for (const p of s.parts) flat.push(p);
      const row = s.row as Entry;
      const values: SqlValue[] = [];
      for (const c of s.t.columns) {
        const e = s.cols.get(c);
        const v = isLive(e, row) ? e.val : rowsOf(db, s.t).defaultOf(c);
        flat.push(v);
        values.push(v);
      }
      fps.set(s, exact ? fingerprintAsWritten(db, s.t, values) : null);
    };
    for (const s of rows) {
      if (s.t.relayed) continue;
      const alive = s.row?.val === ALIVE_N;
      if (!alive) {
        if (s.rowChanged && s.wasAlive) rowsOf(db, s.t).remove(s.parts);
        continue;
      }
      if (s.rowChanged || !s.wasAlive) {
        whole(s);
        continue;
      }
      const names = s.t.columns.filter((c) => s.won.has(c));
      if (names.length === 0) continue;
      const id = `${s.t.id}\u0000${names.join("\u0000")}`;
      let g = partial.get(id);
      if (!g) {
        g = { t: s.t, names, states: [], flat: [] };
        partial.set(id, g);
      }
      g.states.push(s);
      const row = s.row as Entry;
      for (const p of s.parts) g.flat.push(p);
      for (const c of names) {
        const e = s.cols.get(c);
        g.flat.push(isLive(e, row) ? e.val : rowsOf(db, s.t).defaultOf(c));
      }
      // Read back (chunked, in SQL) by the applier: cheaper than a keyed UPDATE of the fingerprint per row.
      fps.set(s, null);
    }
    for (const g of partial.values()) {
      const rowWriter = rowsOf(db, g.t);
      if (rowWriter.updateMany(g.names, g.flat) === g.states.length) continue;
      // Some row is missing from the table although the log has it: find which, and insert it whole.
      for (const s of g.states) {
        if (rowWriter.read(s.parts) === null) whole(s);
      }
    }
    for (const [t, flat] of groups) rowsOf(db, t).upsert(t.columns, flat);
    return fps;
  }
}

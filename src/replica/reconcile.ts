/**
 * Reconciler: compares a tracked table with its log and captures, each with a
 * fresh HLC, every write the triggers did not see — made while capture was
 * missing (a table rebuilt, triggers dropped) or before the table was tracked.
 *
 * Contract: runs in the caller's write transaction with capture suppressed,
 * after `tw_tracked` holds the table's current columns. Then:
 *
 * - a row the log does not hold as existing is captured as an insert (the
 *   first `track` of a table captures every row this way);
 * - a key the log holds as existing that the table lacks, as a delete;
 * - a column whose value differs from the row's fingerprint (fingerprint.ts,
 *   laid out as `prev.columns`) as an update of that column: an update made
 *   while no trigger was there. A row without a fingerprint (logged before
 *   migration 10) cannot tell, and is taken as unchanged;
 * - a column new to capture takes the value of its live log entry (a change
 *   that arrived before this replica had the column) and otherwise, when it is
 *   not the default, is captured as an update;
 * - a column renamed (`prev.renames`) keeps its entries under the new name,
 *   each with a new sequence number, so it is sent again under that name; a
 *   peer's entry under the new name, newer than ours, wins and its value is
 *   written to the table; a dropped column's entries are deleted, so it is no
 *   longer sent.
 *
 * Every existing row ends with a fingerprint of its current values. Without
 * `prev` (a first track, a new key) columns are not compared.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import { columnHash, fingerprint, storeFingerprint } from "./fingerprint.js";
import type { Clock } from "./hlc.js";
import { compareClocks } from "./hlc.js";
import type { ChangeLog, Entry } from "./log.js";
import { rowsOf } from "./rows.js";
import { evalDefault, NotTrackableError, quoteIdent, type TableInfo } from "./schema.js";
import { ALIVE, DELETED, ROW } from "./triggers.js";
import { compositeKeyProblem, encodeKey, keyString, type SqlValue, sameValue } from "./values.js";

export interface Previous {
  /** The columns capture knew: the fingerprints' layout. */
  columns: string[];
  /** Today's name of a renamed column → the name capture knew it by. */
  renames: Map<string, string>;
}

type FpEntry = Entry & { fp: Uint8Array | null };

interface KeyState {
  key: SqlValue;
  row: FpEntry | null;
  cols: Map<string, FpEntry>;
}

const ALIVE_N = BigInt(ALIVE);
const DELETED_N = BigInt(DELETED);

export class Reconciler {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
    private readonly log: ChangeLog,
  ) {
    this.sql = prepare(db);
  }

  run(t: TrackedTable, info: TableInfo, prev: Previous | null): void {
    const db = this.db;
    const keys = new Map<string, KeyState>();
    for (const e of this.sql.entries.all(t.id) as Array<FpEntry & { pk: SqlValue }>) {
      const id = keyString(e.pk);
      let k = keys.get(id);
      if (!k) {
        k = { key: e.pk, row: null, cols: new Map() };
        keys.set(id, k);
      }
      if (e.col === ROW) k.row = e;
      else k.cols.set(e.col, e);
    }
    if (prev) this.moveColumns(t, prev);
    const known = new Set(prev?.columns ?? []);
    const isDefault = defaultTest(db, info);
    const select = `SELECT ${[...t.pk, ...t.columns].map(quoteIdent).join(", ")} FROM ${quoteIdent(t.name)}`;
    const rows = db.prepare(select).raw(true).safeIntegers(true).all() as SqlValue[][];
    const seen = new Set<string>();
    const setters = new Map<string, Database.Statement>();
    const where = t.pk.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
    const setColumn = (col: string, val: SqlValue, parts: SqlValue[]) => {
      let st = setters.get(col);
      if (!st) {
        st = db.prepare(`UPDATE ${quoteIdent(t.name)} SET ${quoteIdent(col)} = ? WHERE ${where}`);
        setters.set(col, st);
      }
      st.run(val, ...parts);
    };
    for (const r of rows) {
      const parts = r.slice(0, t.pk.length);
      for (const p of parts) {
        const problem = t.pk.length > 1 ? compositeKeyProblem(p) : p === null ? "a NULL key" : null;
        if (problem) throw new NotTrackableError(t.name, `a row has ${problem}`);
      }
      const key = encodeKey(parts);
      const id = keyString(key);
      seen.add(id);
      let values = r.slice(t.pk.length);
      const k = keys.get(id);
      if (k?.row?.val !== ALIVE_N) {
        this.captureRow(t, key, ALIVE_N, fingerprint(values));
        continue;
      }
      const row = k.row;
      const now = fingerprint(values);
      const changed: string[] = [];
      let rewritten = false;
      if (prev) {
        t.columns.forEach((c, j) => {
          const v = values[j] as SqlValue;
          const was = prev.renames.get(c) ?? (known.has(c) ? c : undefined);
          if (was !== undefined) {
            const before = columnHash(row.fp, prev.columns.indexOf(was), prev.columns.length);
            if (before && !before.equals(columnHash(now, j, t.columns.length)!)) changed.push(c);
            else if (was !== c) {
              // A peer that renamed first sent entries under the new name: the newer wins.
              const theirs = k.cols.get(c);
              const ours = k.cols.get(was);
              const wins =
                theirs && (!ours || compareClocks(theirs.hlc, theirs.origin, ours.hlc, ours.origin) > 0);
              if (wins && live(theirs, row) && !sameValue(theirs.val, v)) {
                setColumn(c, theirs.val, parts);
                rewritten = true;
              }
            }
            return;
          }
          const e = k.cols.get(c);
          if (e && live(e, row)) {
            if (!sameValue(e.val, v)) {
              setColumn(c, e.val, parts);
              rewritten = true;
            }
          } else if (!isDefault(c, v)) changed.push(c);
        });
      }
      if (changed.length > 0) this.captureUpdate(t, key, changed);
      // The table converts what it is given to its columns' affinity: read back what it holds.
      if (rewritten) values = [...(rowsOf(db, t).read(parts)?.values() ?? values)];
      const fp = rewritten ? fingerprint(values) : now;
      if (!row.fp || !fp.equals(row.fp)) storeFingerprint(db, t.id, key, fp);
    }
    for (const [id, k] of keys) {
      if (!seen.has(id) && k.row?.val === ALIVE_N) this.captureRow(t, k.key, DELETED_N, null);
    }
  }

  /** Renamed columns' entries take the new name (the newer of two wins); dropped ones' go. */
  private moveColumns(t: TrackedTable, prev: Previous): void {
    const renamed = new Set(prev.renames.values());
    for (const c of prev.columns) {
      if (!t.columnSet.has(c) && !renamed.has(c)) this.sql.dropColumn.run(t.id, c);
    }
    for (const [now, was] of prev.renames) {
      const at = { tbl: t.id, now, was };
      this.sql.dropOlderOurs.run(at);
      this.sql.dropOlderTheirs.run(at);
      const { hlc, seq } = this.clock.read();
      const moved = BigInt(this.sql.renameColumn.run({ ...at, seq }).changes);
      this.clock.observe(hlc, seq + moved);
    }
  }

  /** An insert (its row entry stands for every column) or a delete, with a fresh clock. */
  private captureRow(t: TrackedTable, key: SqlValue, val: bigint, fp: Buffer | null): void {
    const { hlc, seq } = this.clock.tick();
    const origin = this.clock.nodeId;
    this.log.prune(t.id, key, hlc, origin);
    this.log.putLocal([t.id, key, ROW, val, hlc, origin, seq, fp]);
  }

  /** An update of these columns, one event; the values stay in the table. */
  private captureUpdate(t: TrackedTable, key: SqlValue, cols: string[]): void {
    const { hlc, seq } = this.clock.tick();
    const origin = this.clock.nodeId;
    for (const col of cols) this.log.put(t.id, key, { col, val: null, hlc, origin, seq });
  }
}

/** Whether a column entry is as new as the row entry (older ones a delete or insert hid). */
function live(e: Entry, row: Entry): boolean {
  return compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0;
}

/** Whether a value is its column's declared default (evaluated once per column). */
function defaultTest(db: Database.Database, info: TableInfo): (col: string, v: SqlValue) => boolean {
  const defaults = new Map<string, { value: unknown; known: boolean }>();
  return (col, v) => {
    let d = defaults.get(col);
    if (!d) {
      try {
        d = { value: evalDefault(db, info.defaults.get(col) ?? null), known: true };
      } catch {
        d = { value: null, known: false };
      }
      defaults.set(col, d);
    }
    return d.known && sameValue(d.value as SqlValue, v);
  };
}

function prepare(db: Database.Database) {
  const newer = (a: string, b: string) =>
    `(${a}.hlc > ${b}.hlc OR (${a}.hlc = ${b}.hlc AND ${a}.origin > ${b}.origin))`;
  return {
    entries: db
      .prepare("SELECT pk, col, val, hlc, origin, seq, src, vals, fp FROM tw_log WHERE tbl = ?")
      .safeIntegers(true),
    dropColumn: db.prepare("DELETE FROM tw_log WHERE tbl = ? AND col = ?"),
    dropOlderOurs: db.prepare(
      `DELETE FROM tw_log AS o WHERE o.tbl = :tbl AND o.col = :was AND EXISTS (
         SELECT 1 FROM tw_log AS n WHERE n.tbl = :tbl AND n.pk = o.pk AND n.col = :now AND ${newer("n", "o")})`,
    ),
    dropOlderTheirs: db.prepare(
      `DELETE FROM tw_log AS n WHERE n.tbl = :tbl AND n.col = :now AND EXISTS (
         SELECT 1 FROM tw_log AS o WHERE o.tbl = :tbl AND o.pk = n.pk AND o.col = :was)`,
    ),
    // Each renamed entry takes a new sequence number (clock and origin kept), so it
    // is sent again under its new name: a peer that renamed first has only
    // seen it under the old one, which it no longer has.
    renameColumn: db.prepare(
      `UPDATE tw_log SET col = :now, seq = :seq + n.i
       FROM (SELECT pk AS k, row_number() OVER (ORDER BY seq, pk) AS i FROM tw_log WHERE tbl = :tbl AND col = :was) AS n
       WHERE tbl = :tbl AND col = :was AND pk = n.k`,
    ),
    counter: db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck().safeIntegers(true),
  };
}

/**
 * Winners: the log rows a merged batch writes, beside the table rows the
 * Materializer wrote.
 *
 * Contract: `writeWinners` drops what the new row entries made dead, then
 * writes the winning entries in one `putMany`: with no value where the table
 * holds it, with their value where it does not (a column the table lacks, a
 * dead row, a relayed table, whose live row entry keeps its implicit cells in
 * `vals`); entries that outlive a row leaving the table keep their value and
 * source. A live row entry carries the fingerprint of what its table row now
 * holds (`fps`, from the Materializer), read back from the table where
 * unknown, or ingest and reconciliation would take the row for a local write.
 * Runs inside the caller's transaction, capture suppressed.
 */
import type Database from "better-sqlite3";
import { refreshFingerprints } from "./fingerprint.js";
import { type ChangeLog, type Entry, encodeRowValues } from "./log.js";
import { ALIVE_N, type Cell, type RowState } from "./merge.js";
import { ROW } from "./triggers.js";
import type { SqlValue } from "./values.js";

export function writeWinners(
  db: Database.Database,
  log: ChangeLog,
  rows: RowState[],
  from: string | null,
  fps: Map<RowState, Buffer | null>,
): void {
  const flat: unknown[] = [];
  const readBack: RowState[] = [];
  const put = (
    s: RowState,
    e: Entry,
    val: SqlValue,
    src: string | null,
    vals: string | null = null,
    fp: Buffer | null = null,
  ) => flat.push(s.t.id, s.key, e.col, val, e.hlc, e.origin, e.seq, src, vals, fp);
  for (const s of rows) {
    if (s.dropped && s.row) log.prune(s.t.id, s.key, s.row.hlc, s.row.origin);
    const alive = s.row?.val === ALIVE_N;
    const inTable = alive && !s.t.relayed;
    const fp = inTable && s.won.size > 0 ? (fps.get(s) ?? null) : null;
    if (inTable && s.won.size > 0 && (fp === null || !s.won.has(ROW))) readBack.push(s);
    for (const e of s.won.values()) {
      if (e.col === ROW) put(s, e, e.val, from, alive && s.t.relayed ? implicitValues(s) : null, fp);
      else put(s, e, inTable && s.t.columnSet.has(e.col) ? null : e.val, from);
    }
    if (s.wasAlive && !alive && !s.t.relayed) {
      // The row leaves the table: entries that outlive it keep their value (and source) in the log.
      for (const e of s.cols.values()) if (!e.implicit && !s.won.has(e.col)) put(s, e, e.val, e.src ?? null);
    }
  }
  log.putMany(flat);
  refreshFingerprints(db, readBack);
}

/** What a relayed row entry keeps: its implicit cells' values. */
function implicitValues(s: RowState): string {
  const cells: Array<[string, SqlValue]> = [];
  for (const [col, e] of s.cols) if ((e as Cell).implicit) cells.push([col, e.val]);
  return encodeRowValues(cells);
}

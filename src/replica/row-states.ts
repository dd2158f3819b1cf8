/**
 * Row states: what a batch's merge starts from, the current cells of every
 * key the batch touches.
 *
 * Contract: `loadRowStates` gives one RowState per key (`of[i]` is change
 * i's) holding the key's stored entries, read one query per table per 256
 * keys, and for a live row its values: a tracked table's from the table row
 * (its column entries hold none), a relayed table's from its row entry's
 * `vals`. A value without an entry of its own is an implicit cell with the
 * row entry's clock. Reads only; the caller's transaction keeps it current.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import type { Incoming } from "./incoming.js";
import { type ChangeLog, decodeRowValues } from "./log.js";
import { ALIVE_N, newState, type RowState, rowId } from "./merge.js";
import { rowsOf } from "./rows.js";
import { ROW } from "./triggers.js";

export function loadRowStates(
  db: Database.Database,
  log: ChangeLog,
  batch: Incoming[],
): { rows: Map<string, RowState>; of: RowState[] } {
  const rows = new Map<string, RowState>();
  const of: RowState[] = [];
  const byTable = new Map<TrackedTable, RowState[]>();
  for (const inc of batch) {
    const id = rowId(inc.t, inc.key);
    let s = rows.get(id);
    if (!s) {
      s = newState(inc.t, inc.key, inc.parts);
      rows.set(id, s);
      const states = byTable.get(inc.t);
      if (states) states.push(s);
      else byTable.set(inc.t, [s]);
    }
    of.push(s);
  }
  for (const [t, states] of byTable) {
    const entries = log.loadMany(
      t.id,
      states.map((s) => s.key),
    );
    for (const e of entries) {
      const s = rows.get(rowId(t, e.pk));
      if (!s) continue;
      const { pk: _, ...entry } = e;
      if (e.col === ROW) {
        s.row = entry;
        s.wasAlive = e.val === ALIVE_N;
      } else s.cols.set(e.col, entry);
    }
    if (t.relayed) for (const s of states) relayedValues(s);
    else if (entries.length > 0) for (const s of states) tableValues(db, s);
  }
  return { rows, of };
}

/** An existing row's values: its columns' entries hold none, and a column without one has the row's clock. */
function tableValues(db: Database.Database, s: RowState): void {
  if (!s.wasAlive || !s.row) return;
  const values = rowsOf(db, s.t).read(s.parts);
  if (!values) return;
  const row = s.row;
  for (const [col, val] of values) {
    const cell = s.cols.get(col);
    if (cell) cell.val = val;
    else s.cols.set(col, { col, val, hlc: row.hlc, origin: row.origin, seq: row.seq, implicit: true });
  }
}

/**
 * A relayed live row's implicit cells, from its row entry's values (columns
 * with entries of their own keep those: they are newer).
 */
function relayedValues(s: RowState): void {
  const row = s.row;
  if (!s.wasAlive || !row?.vals) return;
  for (const [col, val] of decodeRowValues(row.vals)) {
    if (s.cols.has(col)) continue;
    s.cols.set(col, { col, val, hlc: row.hlc, origin: row.origin, seq: row.seq, implicit: true });
  }
}

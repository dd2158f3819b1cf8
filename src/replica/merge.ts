/**
 * Merge: the pure part of apply — one row's state, and how a change merges
 * into it by last-writer-wins. No SQL here.
 *
 * Contract: `mergeOne` is a pure function of the entries seen, so replicas
 * converge whatever the order, duplication or batching of delivery:
 *
 * - each (table, key, column) keeps its greatest entry by (HLC, origin, value);
 *   a column without an entry of its own has its row entry's clock (an insert
 *   writes every column) and the table's value;
 * - the row entry (insert or tombstone) keeps its greatest likewise; a key's
 *   row exists iff that entry is an insert;
 * - a column entry older than the row entry is dead: a delete hides every
 *   older write, and a later insert (which writes every column it knows)
 *   resurrects the row with its own values. Dead entries are dropped;
 * - an existing row shows, for each column, its live entry, else the
 *   column's default.
 *
 * `intended` is the row a state says the table should hold.
 */
import type { TrackedTable } from "./catalog.js";
import type { RowVersion } from "./conflicts.js";
import { compareClocks, formatHlc } from "./hlc.js";
import type { Incoming } from "./incoming.js";
import type { Entry } from "./log.js";
import { ALIVE, DELETED, ROW } from "./triggers.js";
import { compareValues, keyString, type SqlValue, setColumn, toWire } from "./values.js";

/** A column's entry; `implicit`: none is stored, its row entry stands for it. */
export interface Cell extends Entry {
  implicit?: boolean;
}

/** Why a row of the batch is not written as merged. */
export type Skip =
  /** Quarantined: held for a parent row, or refused by the schema. */
  | { kind: "held" | "failed"; reason: string; waits?: { table: string; pk: SqlValue[] } }
  /** Removed by a resolution rule: a fresh tombstone takes its place. */
  | { kind: "removed" };

export interface RowState {
  t: TrackedTable;
  key: SqlValue;
  parts: SqlValue[];
  row: Entry | null;
  /** Live cells, with their values (read from the table where it holds them). */
  cols: Map<string, Cell>;
  wasAlive: boolean;
  rowChanged: boolean;
  /** Entries that won, to write to the log (column "" is the row entry; no implicit cells). */
  won: Map<string, Cell>;
  /** A stored column entry died: the log must drop it. */
  dropped: boolean;
  /** The batch's changes of this row, by index. */
  changes: number[];
  /** How many of them won an entry. */
  wins: number;
  skip: Skip | null;
}

export const ALIVE_N = BigInt(ALIVE);
export const DELETED_N = BigInt(DELETED);

export function newState(t: TrackedTable, key: SqlValue, parts: SqlValue[]): RowState {
  return {
    t,
    key,
    parts,
    row: null,
    cols: new Map(),
    wasAlive: false,
    rowChanged: false,
    won: new Map(),
    dropped: false,
    changes: [],
    wins: 0,
    skip: null,
  };
}

export function rowId(t: TrackedTable, key: SqlValue): string {
  return `${t.id}:${keyString(key)}`;
}

/** Whether the merged row exists (and is not removed by a rule). */
export function aliveAfter(s: RowState): boolean {
  return s.row?.val === ALIVE_N && s.skip === null;
}

/** Merges one change into its row's state; true when any entry won. */
export function mergeOne(s: RowState, inc: Incoming, seq: bigint): boolean {
  let won = false;
  let wonRow = false;
  if (inc.op !== "update") {
    const val = inc.op === "insert" ? ALIVE_N : DELETED_N;
    if (!s.row || beats(inc, s.row, val)) {
      s.row = { col: ROW, val, hlc: inc.hlc, origin: inc.origin, seq };
      s.won.set(ROW, s.row);
      s.rowChanged = true;
      won = wonRow = true;
      // Column entries older than the row entry are dead: drop them.
      for (const [c, e] of s.cols) {
        if (compareClocks(e.hlc, e.origin, inc.hlc, inc.origin) < 0) {
          s.cols.delete(c);
          if (!s.won.delete(c) && !e.implicit) s.dropped = true;
        }
      }
    }
  }
  // Entries older than the row entry are dead on arrival.
  if (s.row && compareClocks(inc.hlc, inc.origin, s.row.hlc, s.row.origin) < 0) return won;
  // A winning insert's values for the table's columns need no entries: its row entry stands for them.
  const implicit = wonRow && inc.op === "insert";
  for (const [col, val] of inc.cols) {
    const cur = s.cols.get(col);
    if (cur && !beats(inc, cur, val)) continue;
    const e: Cell = { col, val, hlc: inc.hlc, origin: inc.origin, seq };
    s.cols.set(col, e);
    // An implicit cell is written with its row: by materialize, which writes
    // whole rows for a new row entry, or, on a relay, into the row entry.
    if (implicit && (s.t.relayed || s.t.columnSet.has(col))) e.implicit = true;
    else s.won.set(col, e);
    won = true;
  }
  return won;
}

/** Whether the incoming write of `val` beats entry `e`: by clock, then by value. */
function beats(inc: Incoming, e: Entry, val: SqlValue): boolean {
  return (compareClocks(inc.hlc, inc.origin, e.hlc, e.origin) || compareValues(val, e.val)) > 0;
}

/** Whether a cell is live under the row entry (see the contract). */
export function isLive(e: Cell | undefined, row: Entry): e is Cell {
  return e !== undefined && (e.implicit === true || compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0);
}

/**
 * The row the state says the table holds, column by column (the table's
 * columns only): a live entry's value, else the column's default.
 */
export function intended(s: RowState, defaultOf: (col: string) => SqlValue): Map<string, SqlValue> {
  const out = new Map<string, SqlValue>();
  const row = s.row;
  if (!row) return out;
  for (const c of s.t.columns) {
    const e = s.cols.get(c);
    out.set(c, isLive(e, row) ? e.val : defaultOf(c));
  }
  return out;
}

/** A version of a row as a conflict keeps it: key, clock and columns in wire form. */
export function versionOf(
  parts: SqlValue[],
  values: Iterable<[string, SqlValue]>,
  clock?: { hlc: bigint; origin: string },
): RowVersion {
  const columns: RowVersion["columns"] = {};
  for (const [c, v] of values) setColumn(columns, c, toWire(v));
  const v: RowVersion = { pk: parts.map(toWire), columns };
  if (clock) {
    v.hlc = formatHlc(clock.hlc);
    v.origin = clock.origin;
  }
  return v;
}

/** The live cells of a state, with values: what a row holds before a change overrides it. */
export function liveValues(s: RowState): Array<[string, SqlValue]> {
  const row = s.row;
  if (!row) return [];
  const out: Array<[string, SqlValue]> = [];
  for (const [c, e] of s.cols) if (isLive(e, row)) out.push([c, e.val]);
  return out;
}

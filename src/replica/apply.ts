/**
 * Applier: merges a batch of changes from other replicas into this one.
 *
 * Contract: the whole batch is checked before anything is written (see
 * `incoming.ts`); one bad change refuses it whole with an error naming the
 * change. A batch is one IMMEDIATE transaction with capture suppressed, so the
 * apply is not captured again as a local write. The merge is a pure function
 * of the set of entries seen, so replicas converge whatever the order,
 * duplication or batching of delivery:
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
 * Winning entries go to the local log with their original HLC and origin (so
 * they relay onward) and a new local sequence number; losing ones change
 * nothing, so applying a batch twice changes nothing. An insert's values for
 * the table's columns go to the table only (its row entry stands for them);
 * values the table cannot hold — columns it lacks (yet), entries newer than a
 * tombstone, tables a relay only relays — are kept in the entry, and written
 * to the table by a later `track` once the column or table exists. A relay
 * keeps a winning insert's values in its row entry (`vals`), one log row per
 * insert, as a table would hold them.
 */
import { InvalidArgumentError } from "../errors.js";
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { refreshFingerprints } from "./fingerprint.js";
import type { Clock } from "./hlc.js";
import { compareClocks, isNodeId } from "./hlc.js";
import { Checker, type Incoming } from "./incoming.js";
import { type ChangeLog, decodeRowValues, type Entry, encodeRowValues } from "./log.js";
import { rowsOf } from "./rows.js";
import { ALIVE, DELETED, ROW } from "./triggers.js";
import { compareValues, keyString, type SqlValue } from "./values.js";

export { ClockDriftError, InvalidChangeError } from "./incoming.js";

export interface ApplyOptions {
  /**
   * The node id of the peer the batch came from: entries it wins are marked
   * with it, and `changesSince(…, { excludeSource })` can leave them out.
   */
  from?: string;
}

export interface ApplyResult {
  /** Changes in the batch. */
  received: number;
  /** Changes that won at least one entry (the rest were old news or duplicates). */
  applied: number;
}

/** A column's entry; `implicit`: none is stored, its row entry stands for it. */
interface Cell extends Entry {
  implicit?: boolean;
}

interface RowState {
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
}

const ALIVE_N = BigInt(ALIVE);
const DELETED_N = BigInt(DELETED);

export class Applier {
  private readonly checker: Checker;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
    relay: boolean,
  ) {
    this.checker = new Checker(store.db, clock, catalog, relay);
  }

  apply(changes: unknown, options: ApplyOptions = {}): ApplyResult {
    if (!Array.isArray(changes)) throw new InvalidArgumentError("changes", "must be an array of changes");
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const from = options.from ?? null;
    if (from !== null && !isNodeId(from))
      throw new InvalidArgumentError("from", `is not a node id: ${JSON.stringify(from)}`);
    return this.store.write(() => {
      // Inside the transaction: the catalog cannot move between check and write.
      const now = Date.now();
      this.catalog.refresh();
      this.checker.reset();
      const batch = changes.map((c, i) => this.checker.check(c, i, now));
      this.checker.commit(batch);
      return this.merge(batch, from);
    });
  }

  private merge(batch: Incoming[], from: string | null): ApplyResult {
    // A batch may hold a child row before its parent: check foreign keys at
    // commit. SQLite sets a flag pragma's flag while it compiles it, and the
    // compiled program only expires every prepared statement of the
    // connection (which made each batch re-prepare them all): so the pragma
    // is prepared, not run, once per transaction, as the flag resets at
    // commit. The foreign-key test holds it to that.
    if (this.catalog.foreignKeys) this.store.db.prepare("PRAGMA defer_foreign_keys = ON");
    this.clock.suppress(true);
    let { hlc: maxHlc, seq } = this.clock.read();
    const { rows, of } = this.load(batch);
    let applied = 0;
    for (let i = 0; i < batch.length; i++) {
      const inc = batch[i] as Incoming;
      if (inc.hlc > maxHlc) maxHlc = inc.hlc;
      if (mergeOne(of[i] as RowState, inc, seq + 1n)) {
        seq++;
        applied++;
      }
    }
    this.writeLog(rows, from);
    this.materialize(rows);
    this.clock.observe(maxHlc, seq);
    this.clock.suppress(false);
    return { received: batch.length, applied };
  }

  /**
   * The current cells of every key the batch touches (`of[i]` is change i's):
   * stored entries, one query per table per 256 keys, and for an existing row
   * its values.
   */
  private load(batch: Incoming[]): { rows: Map<string, RowState>; of: RowState[] } {
    const rows = new Map<string, RowState>();
    const of: RowState[] = [];
    const byTable = new Map<TrackedTable, RowState[]>();
    for (const inc of batch) {
      const id = rowId(inc.t, inc.key);
      let s = rows.get(id);
      if (!s) {
        s = {
          t: inc.t,
          key: inc.key,
          parts: inc.parts,
          row: null,
          cols: new Map(),
          wasAlive: false,
          rowChanged: false,
          won: new Map(),
          dropped: false,
        };
        rows.set(id, s);
        const states = byTable.get(inc.t);
        if (states) states.push(s);
        else byTable.set(inc.t, [s]);
      }
      of.push(s);
    }
    for (const [t, states] of byTable) {
      const entries = this.log.loadMany(
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
      else if (entries.length > 0) for (const s of states) this.readValues(s);
    }
    return { rows, of };
  }

  /** An existing row's values: its columns' entries hold none, and a column without one has the row's clock. */
  private readValues(s: RowState): void {
    if (!s.wasAlive || !s.row) return;
    const values = rowsOf(this.store.db, s.t).read(s.parts);
    if (!values) return;
    const row = s.row;
    for (const [col, val] of values) {
      const cell = s.cols.get(col);
      if (cell) cell.val = val;
      else s.cols.set(col, { col, val, hlc: row.hlc, origin: row.origin, seq: row.seq, implicit: true });
    }
  }

  /**
   * Drops what the new row entries made dead, then writes the winners: with
   * no value where the table will hold it, with their value where it will not.
   */
  private writeLog(rows: Map<string, RowState>, from: string | null): void {
    const flat: unknown[] = [];
    const put = (s: RowState, e: Entry, val: SqlValue, src: string | null, vals: string | null = null) =>
      flat.push(s.t.id, s.key, e.col, val, e.hlc, e.origin, e.seq, src, vals);
    for (const s of rows.values()) {
      if (s.dropped && s.row) this.log.prune(s.t.id, s.key, s.row.hlc, s.row.origin);
      const alive = s.row?.val === ALIVE_N;
      const inTable = alive && !s.t.relayed;
      for (const e of s.won.values()) {
        if (e.col === ROW) put(s, e, e.val, from, alive && s.t.relayed ? implicitValues(s) : null);
        else put(s, e, inTable && s.t.columnSet.has(e.col) ? null : e.val, from);
      }
      if (s.wasAlive && !alive && !s.t.relayed) {
        // The row leaves the table: entries that outlive it keep their value (and source) in the log.
        for (const e of s.cols.values())
          if (!e.implicit && !s.won.has(e.col)) put(s, e, e.val, e.src ?? null);
      }
    }
    this.log.putMany(flat);
  }

  /** Writes each touched row as the merged log says it is, many rows per statement. */
  private materialize(rows: Map<string, RowState>): void {
    // Whole rows (the common case) group by table, partial ones by table and columns.
    const groups = new Map<TrackedTable | string, { t: TrackedTable; names: string[]; flat: SqlValue[] }>();
    for (const s of rows.values()) {
      if (s.t.relayed) continue;
      const alive = s.row?.val === ALIVE_N;
      if (!alive) {
        if (s.rowChanged && s.wasAlive) rowsOf(this.store.db, s.t).remove(s.parts);
        continue;
      }
      // A newer insert rewrites every column: its live entry or, having none, its default.
      const names = s.rowChanged ? s.t.columns : s.t.columns.filter((c) => s.won.has(c));
      if (names.length === 0 && !s.rowChanged) continue;
      const id = names === s.t.columns ? s.t : `${s.t.id}\u0000${names.join("\u0000")}`;
      let g = groups.get(id);
      if (!g) {
        g = { t: s.t, names, flat: [] };
        groups.set(id, g);
      }
      const row = s.row as Entry;
      for (const p of s.parts) g.flat.push(p);
      for (const c of names) {
        const e = s.cols.get(c);
        // Only an entry as new as the row entry is live (see the contract above).
        const live =
          e !== undefined && (e.implicit || compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0);
        g.flat.push(live ? e.val : rowsOf(this.store.db, s.t).defaultOf(c));
      }
    }
    for (const g of groups.values()) rowsOf(this.store.db, g.t).upsert(g.names, g.flat);
    // SCHEMA EVOLUTION (fingerprint.ts): the rows written here get fingerprints of
    // what they hold now, or ingest and reconciliation would take them for local writes.
    refreshFingerprints(
      this.store.db,
      [...rows.values()].filter((s) => s.won.size > 0 && s.row?.val === ALIVE_N),
    );
  }
}

/** Merges one change into its row's state; true when any entry won. */
function mergeOne(s: RowState, inc: Incoming, seq: bigint): boolean {
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

/** What a relayed row entry keeps: its implicit cells' values. */
function implicitValues(s: RowState): string {
  const cells: Array<[string, SqlValue]> = [];
  for (const [col, e] of s.cols) if (e.implicit) cells.push([col, e.val]);
  return encodeRowValues(cells);
}

/** Whether the incoming write of `val` beats entry `e`: by clock, then by value. */
function beats(inc: Incoming, e: Entry, val: SqlValue): boolean {
  return (compareClocks(inc.hlc, inc.origin, e.hlc, e.origin) || compareValues(val, e.val)) > 0;
}

function rowId(t: TrackedTable, key: SqlValue): string {
  return `${t.id}:${keyString(key)}`;
}

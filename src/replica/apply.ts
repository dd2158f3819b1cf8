/**
 * Applier: merges a batch of changes from other replicas into this one.
 *
 * Contract: the whole batch is checked before anything is written; one bad
 * change (unknown table, wrong key arity, malformed value, clock more than
 * maxDriftMs ahead) refuses it whole with an error naming the change. A batch
 * is one IMMEDIATE transaction with capture suppressed, so the apply is not
 * captured again as a local write. The merge is a pure function of the set
 * of entries seen, so replicas converge whatever the order, duplication or
 * batching of delivery:
 *
 * - each (table, key, column) keeps its greatest entry by (HLC, origin, value);
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
 * nothing, so applying a batch twice changes nothing. Entries for columns this
 * table does not capture (yet) are kept in the log and written to the table
 * by a later `track`, once the column exists.
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Clock } from "./hlc.js";
import { compareClocks, isNodeId, parseHlc } from "./hlc.js";
import type { ChangeLog, Entry } from "./log.js";
import { type RowWrite, RowWriter } from "./rows.js";
import { ALIVE, DELETED, ROW } from "./triggers.js";
import {
  compareValues,
  compositeKeyProblem,
  describeValue,
  encodeKey,
  fromWire,
  keyString,
  type SqlValue,
} from "./values.js";

/** A change in a batch cannot be applied; the batch was refused whole and nothing was written. */
export class InvalidChangeError extends TidewireError {
  constructor(
    readonly index: number,
    readonly reason: string,
    what: string,
    code = "ERR_INVALID_CHANGE",
  ) {
    super(
      `changes[${index}]${what ? ` (${what})` : ""} ${reason}; the batch was refused and nothing applied`,
      code,
    );
    this.name = "InvalidChangeError";
  }
}

/** A change's clock is further ahead of local time than maxDriftMs allows. */
export class ClockDriftError extends InvalidChangeError {
  constructor(index: number, reason: string, what: string) {
    super(index, reason, what, "ERR_CLOCK_DRIFT");
    this.name = "ClockDriftError";
  }
}

export interface ApplyResult {
  /** Changes in the batch. */
  received: number;
  /** Changes that won at least one entry (the rest were old news or duplicates). */
  applied: number;
}

interface Incoming {
  t: TrackedTable;
  key: SqlValue;
  parts: SqlValue[];
  op: "insert" | "update" | "delete";
  cols: Array<[string, SqlValue]>;
  hlc: bigint;
  origin: string;
}

interface RowState {
  t: TrackedTable;
  key: SqlValue;
  parts: SqlValue[];
  row: Entry | null;
  cols: Map<string, Entry>;
  wasAlive: boolean;
  rowChanged: boolean;
  /** Entries that won, to write to the log (column "" is the row entry). */
  won: Map<string, Entry>;
  /** A stored column entry died: the log must drop it. */
  dropped: boolean;
}

export class Applier {
  private readonly writers = new WeakMap<TrackedTable, RowWriter>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
  ) {}

  apply(changes: unknown): ApplyResult {
    if (!Array.isArray(changes)) throw new InvalidArgumentError("changes", "must be an array of changes");
    return this.store.write(() => {
      // Inside the transaction: the catalog cannot move between check and write.
      const now = Date.now();
      this.catalog.refresh();
      const batch = changes.map((c, i) => this.check(c, i, now));
      return this.merge(batch);
    });
  }

  private check(c: unknown, index: number, now: number): Incoming {
    const o = (c ?? {}) as Record<string, unknown>;
    const what = () => (typeof c === "object" && c !== null ? describeChange(o) : "");
    const fail = (reason: string): never => {
      throw new InvalidChangeError(index, reason, what());
    };
    if (typeof c !== "object" || c === null || Array.isArray(c)) fail("is not an object");
    if (typeof o.table !== "string") fail("has no table name");
    const t = this.catalog.peek(o.table as string);
    if (!t) fail(`names table "${String(o.table)}", which is not tracked here`);
    const table = t as TrackedTable;
    if (o.op !== "insert" && o.op !== "update" && o.op !== "delete") fail(`has op ${describeValue(o.op)}`);
    if (!Array.isArray(o.pk) || o.pk.length !== table.pk.length) {
      fail(
        `has a key of ${Array.isArray(o.pk) ? o.pk.length : "no"} parts; ${table.name} has ${table.pk.length}`,
      );
    }
    const parts = (o.pk as unknown[]).map((w, i) => {
      let v: SqlValue;
      try {
        v = fromWire(w);
      } catch (err) {
        return fail(`has a malformed key part ${i}: ${(err as Error).message}`);
      }
      const problem = table.pk.length > 1 ? compositeKeyProblem(v) : v === null ? "a NULL key" : null;
      if (problem) fail(`has ${problem}`);
      return v;
    });
    const cols: Array<[string, SqlValue]> = [];
    const given = o.columns ?? {};
    if (typeof given !== "object" || given === null || Array.isArray(given))
      fail("has columns that are not an object");
    for (const [name, w] of Object.entries(given as object)) {
      if (name === ROW) fail('has a column named ""');
      if (table.pkSet.has(name)) fail(`sets key column "${name}" as a column`);
      try {
        cols.push([name, fromWire(w)]);
      } catch (err) {
        fail(`has a malformed value for column "${name}": ${(err as Error).message}`);
      }
    }
    if (o.op === "delete" && cols.length > 0) fail("is a delete that carries columns");
    let hlc = 0n;
    try {
      hlc = parseHlc(o.hlc);
    } catch (err) {
      fail(`has ${(err as Error).message}`);
    }
    if (!isNodeId(o.origin)) fail(`has origin ${describeValue(o.origin)}, which is not a node id`);
    try {
      this.clock.checkDrift(hlc, now);
    } catch (err) {
      throw new ClockDriftError(index, `is refused: ${(err as Error).message}`, what());
    }
    return {
      t: table,
      key: encodeKey(parts),
      parts,
      op: o.op as Incoming["op"],
      cols,
      hlc,
      origin: o.origin as string,
    };
  }

  private merge(batch: Incoming[]): ApplyResult {
    // A batch may hold a child row before its parent: check foreign keys at commit.
    this.store.db.pragma("defer_foreign_keys = ON");
    this.clock.suppress(true);
    let { hlc: maxHlc, seq } = this.clock.read();
    const rows = this.load(batch);
    let applied = 0;
    for (const inc of batch) {
      if (inc.hlc > maxHlc) maxHlc = inc.hlc;
      if (this.mergeOne(rows.get(rowId(inc.t, inc.key))!, inc, seq + 1n)) {
        seq++;
        applied++;
      }
    }
    this.writeLog(rows);
    this.materialize(rows);
    this.clock.observe(maxHlc, seq);
    this.clock.suppress(false);
    return { received: batch.length, applied };
  }

  /** The current entries of every key the batch touches: one query per table per 256 keys. */
  private load(batch: Incoming[]): Map<string, RowState> {
    const rows = new Map<string, RowState>();
    const byTable = new Map<TrackedTable, SqlValue[]>();
    for (const inc of batch) {
      const id = rowId(inc.t, inc.key);
      if (rows.has(id)) continue;
      rows.set(id, {
        t: inc.t,
        key: inc.key,
        parts: inc.parts,
        row: null,
        cols: new Map(),
        wasAlive: false,
        rowChanged: false,
        won: new Map(),
        dropped: false,
      });
      const keys = byTable.get(inc.t) ?? [];
      keys.push(inc.key);
      byTable.set(inc.t, keys);
    }
    for (const [t, keys] of byTable) {
      for (const e of this.log.loadMany(t.id, keys)) {
        const s = rows.get(rowId(t, e.pk));
        if (!s) continue;
        const { pk: _, ...entry } = e;
        if (e.col === ROW) {
          s.row = entry;
          s.wasAlive = e.val === BigInt(ALIVE);
        } else s.cols.set(e.col, entry);
      }
    }
    return rows;
  }

  /** Merges one change into its row's state; true when any entry won. */
  private mergeOne(s: RowState, inc: Incoming, seq: bigint): boolean {
    const beats = (e: Entry, val: SqlValue) =>
      (compareClocks(inc.hlc, inc.origin, e.hlc, e.origin) || compareValues(val, e.val)) > 0;
    let won = false;
    if (inc.op !== "update") {
      const val = BigInt(inc.op === "insert" ? ALIVE : DELETED);
      if (!s.row || beats(s.row, val)) {
        s.row = { col: ROW, val, hlc: inc.hlc, origin: inc.origin, seq };
        s.won.set(ROW, s.row);
        s.rowChanged = true;
        won = true;
        // Column entries older than the row entry are dead: drop them.
        for (const [c, e] of s.cols) {
          if (compareClocks(e.hlc, e.origin, inc.hlc, inc.origin) < 0) {
            s.cols.delete(c);
            if (!s.won.delete(c)) s.dropped = true;
          }
        }
      }
    }
    // Entries older than the row entry are dead on arrival.
    if (s.row && compareClocks(inc.hlc, inc.origin, s.row.hlc, s.row.origin) < 0) return won;
    for (const [col, val] of inc.cols) {
      const cur = s.cols.get(col);
      if (cur && !beats(cur, val)) continue;
      const e: Entry = { col, val, hlc: inc.hlc, origin: inc.origin, seq };
      s.cols.set(col, e);
      s.won.set(col, e);
      won = true;
    }
    return won;
  }

  /** Drops what the new row entries made dead, then writes the winners. */
  private writeLog(rows: Map<string, RowState>): void {
    const puts: Array<{ tbl: number; pk: SqlValue; e: Entry }> = [];
    for (const s of rows.values()) {
      if (s.dropped && s.row) this.log.prune(s.t.id, s.key, s.row.hlc, s.row.origin);
      for (const e of s.won.values()) puts.push({ tbl: s.t.id, pk: s.key, e });
    }
    this.log.putMany(puts);
  }

  /** Writes each touched row as the merged log says it is, many rows per statement. */
  private materialize(rows: Map<string, RowState>): void {
    const groups = new Map<string, { w: RowWriter; names: string[]; rows: RowWrite[] }>();
    for (const s of rows.values()) {
      const w = this.writerFor(s.t);
      const alive = s.row?.val === BigInt(ALIVE);
      if (!alive) {
        if (s.rowChanged && s.wasAlive) w.remove(s.parts);
        continue;
      }
      // A newer insert rewrites every column: its live entry or, having none, its default.
      const names = s.rowChanged ? s.t.columns : s.t.columns.filter((c) => s.won.has(c));
      if (names.length === 0 && !s.rowChanged) continue;
      const row = s.row as Entry;
      const values = names.map((c) => {
        const e = s.cols.get(c);
        // Only an entry as new as the row entry is live (see the contract above).
        const live = e && compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0;
        return live ? e.val : w.defaultOf(c);
      });
      const id = `${s.t.id}\u0000${names.join("\u0000")}`;
      const g = groups.get(id) ?? { w, names, rows: [] };
      g.rows.push({ parts: s.parts, values });
      groups.set(id, g);
    }
    for (const g of groups.values()) g.w.upsert(g.names, g.rows);
  }

  private writerFor(t: TrackedTable): RowWriter {
    let w = this.writers.get(t);
    if (!w) {
      w = new RowWriter(this.store.db, t);
      this.writers.set(t, w);
    }
    return w;
  }
}

function rowId(t: TrackedTable, key: SqlValue): string {
  return `${t.id}:${keyString(key)}`;
}

function describeChange(o: Record<string, unknown>): string {
  const op = typeof o.op === "string" ? o.op : "change";
  const table = typeof o.table === "string" ? o.table : "?";
  const at = typeof o.hlc === "string" ? ` at ${o.hlc}` : "";
  const from = typeof o.origin === "string" ? ` from ${o.origin}` : "";
  return `${op} of ${table} ${describeValue(o.pk)}${at}${from}`.slice(0, 200);
}

/**
 * Pager: reads one page of the change log and serves it as Changes (see
 * `ChangeLog.since`, which checks the options and runs it in one read
 * transaction).
 *
 * Contract: a page holds whole changes (all entries of one row event share a
 * sequence number), at most `limit`, in sequence order. It is read along the
 * seq index in chunks of rows; a chunk that ends inside a sequence is read on
 * from that sequence's start. Values come from the tables set-wise, one
 * `key IN (…)` read per table and chunk of keys, and an insert's columns with
 * entries of their own (newer, travelling as their own changes) are found
 * set-wise too; the catalog is looked up once per table per page. The cursor
 * is the sequence to resume after; when nothing more matches it moves to the
 * local counter, so filtered-out entries are not read again.
 */
import type Database from "better-sqlite3";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Change, ChangeSet } from "./change.js";
import { formatHlc } from "./hlc.js";
import { chunkSize, placeholders, rowsOf } from "./rows.js";
import { ALIVE, ROW } from "./triggers.js";
import {
  compareValues,
  decodeKey,
  keyString,
  type SqlValue,
  setColumn,
  toWire,
  type WireValue,
} from "./values.js";

export interface PageQuery {
  after: bigint;
  /** Leave out entries of this origin. */
  origin: string | null;
  /** Leave out entries applied from this peer, unless their origin is this node. */
  source: string | null;
  /** JSON array of table ids, or null for every table. */
  tables: string | null;
  limit: number;
}

const ALIVE_N = BigInt(ALIVE);

export class Pager {
  private readonly sql: ReturnType<typeof prepare>;
  private readonly owns = new Map<number, Database.Statement>();

  constructor(
    private readonly db: Database.Database,
    private readonly catalog: Catalog,
  ) {
    this.sql = prepare(db);
  }

  /** The page after `q.after`; the caller runs it in a read transaction. */
  page(q: PageQuery): ChangeSet {
    const params = { after: q.after, origin: q.origin, source: q.source, tables: q.tables };
    // Along the seq index in chunks of rows, stopped at the first entry of the
    // (limit+1)th sequence; a chunk that ends inside a sequence is read on
    // from that sequence's start, so a change is never cut.
    const rows: PageRow[] = [];
    let seqs = 0;
    let upto = q.after;
    let before = q.after;
    let hasMore = false;
    let chunk = q.limit + 1;
    for (let from = q.after; ; ) {
      const got = this.sql.page.all({ ...params, after: from, n: chunk }) as PageRow[];
      for (const r of got) {
        if (r[6] !== upto) {
          if (seqs === q.limit) {
            hasMore = true;
            break;
          }
          seqs++;
          before = upto;
          upto = r[6];
        }
        rows.push(r);
      }
      if (hasMore || got.length < chunk) break;
      // The chunk was full: its last sequence may go on. Drop it and read again from before it.
      let dropped = 0;
      while (rows.length > 0 && rows[rows.length - 1]![6] === upto) {
        rows.pop();
        dropped++;
      }
      // A sequence with more entries than a chunk: read it with a larger one.
      if (dropped === got.length) chunk *= 4;
      seqs--;
      upto = before;
      from = before;
    }
    const changes = this.serve(this.group(rows));
    const counter = (this.sql.counter.get() as bigint | undefined) ?? 0n;
    const next = hasMore ? upto : counter > upto ? counter : upto;
    return { changes, cursor: next.toString(), hasMore };
  }

  /** The page's entries as one Served per (sequence, table, key), in page order. */
  private group(rows: PageRow[]): Served[] {
    const out: Served[] = [];
    const tables = new Map<bigint, TrackedTable | undefined>();
    let c: Served | null = null;
    for (const r of rows) {
      const [tbl, pk, col, val, hlc, origin, seq, vals] = r;
      if (!c || seq !== c.seq || tbl !== c.tbl || compareValues(pk, c.key) !== 0) {
        let t = tables.get(tbl);
        if (t === undefined && !tables.has(tbl)) {
          t = this.catalog.getById(Number(tbl));
          tables.set(tbl, t);
        }
        if (!t) {
          c = null;
          continue;
        }
        c = { t, tbl, key: pk, seq, hlc, origin, op: "update", stored: [], vals: null };
        out.push(c);
      }
      if (col === ROW) {
        c.op = val === ALIVE_N ? "insert" : "delete";
        c.vals = vals;
      } else c.stored.push(col, val);
    }
    return out;
  }

  /**
   * Fills each change's values: from the table where it holds them (read
   * set-wise, per table), else from the entries. An insert's row entry stands
   * for every column without an entry of its own, found set-wise too.
   */
  private serve(page: Served[]): Change[] {
    const byTable = new Map<TrackedTable, { keys: Map<string, SqlValue>; inserts: Map<string, SqlValue> }>();
    for (const s of page) {
      const relayedInsert = s.vals !== null && s.op === "insert";
      if (s.t.relayed ? !relayedInsert : s.op !== "insert" && s.stored.length === 0) continue;
      let g = byTable.get(s.t);
      if (!g) {
        g = { keys: new Map(), inserts: new Map() };
        byTable.set(s.t, g);
      }
      const id = keyString(s.key);
      if (!s.t.relayed) g.keys.set(id, s.key);
      if (s.op === "insert") g.inserts.set(id, s.key);
    }
    const values = new Map<TrackedTable, Map<string, SqlValue[]>>();
    const own = new Map<TrackedTable, Map<string, Set<string>>>();
    for (const [t, g] of byTable) {
      if (!t.relayed) values.set(t, rowsOf(this.db, t).readMany([...g.keys.values()]));
      if (g.inserts.size > 0) own.set(t, this.ownColumns(t.id, [...g.inserts.values()]));
    }
    const out: Change[] = new Array(page.length);
    for (let i = 0; i < page.length; i++) {
      const s = page[i] as Served;
      const { t } = s;
      let columns: Record<string, WireValue> = {};
      const row = values.get(t)?.get(keyString(s.key)) ?? null;
      for (let j = 0; j < s.stored.length; j += 2) {
        const col = s.stored[j] as string;
        const at = row ? t.columns.indexOf(col) : -1;
        setColumn(columns, col, toWire(at >= 0 ? (row![at] as SqlValue) : (s.stored[j + 1] as SqlValue)));
      }
      if (s.vals !== null && s.op === "insert") {
        // A relayed insert: its row entry holds its values as wire values (encodeRowValues).
        const mine = own.get(t)?.get(keyString(s.key));
        const kept = JSON.parse(s.vals) as Record<string, WireValue>;
        if (!mine && s.stored.length === 0) columns = kept;
        else for (const col in kept) if (!mine?.has(col)) setColumn(columns, col, kept[col] as WireValue);
      } else if (row && s.op === "insert") {
        // The row entry stands for every column without an entry of its own (all newer).
        const mine = own.get(t)?.get(keyString(s.key));
        for (let j = 0; j < t.columns.length; j++) {
          const col = t.columns[j] as string;
          if (!mine?.has(col)) setColumn(columns, col, toWire(row[j] as SqlValue));
        }
      }
      out[i] = {
        table: t.name,
        bucket: t.bucket,
        pk: t.pk.length === 1 ? [toWire(s.key)] : decodeKey(s.key, t.pk.length).map(toWire),
        op: s.op,
        columns,
        hlc: formatHlc(s.hlc),
        origin: s.origin,
        seq: Number(s.seq),
      };
    }
    return out;
  }

  /** The columns with entries of their own, of these keys of one table, a chunk of keys per statement. */
  private ownColumns(tbl: number, keys: SqlValue[]): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (let i = 0; i < keys.length; ) {
      const n = chunkSize(keys.length - i);
      let st = this.owns.get(n);
      if (!st) {
        st = this.db
          .prepare(`SELECT pk, col FROM tw_log WHERE tbl = ? AND pk IN (${placeholders(n)}) AND col > ''`)
          .raw(true)
          .safeIntegers(true);
        this.owns.set(n, st);
      }
      for (const [pk, col] of st.all(tbl, ...keys.slice(i, i + n)) as Array<[SqlValue, string]>) {
        const id = keyString(pk);
        let set = out.get(id);
        if (!set) {
          set = new Set();
          out.set(id, set);
        }
        set.add(col);
      }
      i += n;
    }
    return out;
  }
}

/** One row event of the page: the entries of one (sequence, table, key). */
interface Served {
  t: TrackedTable;
  tbl: bigint;
  key: SqlValue;
  seq: bigint;
  hlc: bigint;
  origin: string;
  op: Change["op"];
  /** Its column entries as stored, flat: column, value (NULL where the table holds it). */
  stored: SqlValue[];
  /** A relayed insert's values, kept in its row entry (see Entry.vals). */
  vals: string | null;
}

/** tbl, pk, col, val, hlc, origin, seq, vals. */
type PageRow = [bigint, SqlValue, string, SqlValue, bigint, string, bigint, string | null];

function prepare(db: Database.Database) {
  // The capture triggers leave src alone: an entry whose origin is this node
  // is a local write, whatever src an earlier applied entry of its cell left.
  const filters = `(:origin IS NULL OR origin <> :origin)
      AND (:source IS NULL OR src IS NOT :source OR origin = (SELECT node FROM tw_clock WHERE id = 0))
      AND (:tables IS NULL OR tbl IN (SELECT value FROM json_each(:tables)))`;
  return {
    // The seq index of a WITHOUT ROWID table ends with its key: it yields this order with no sort.
    page: db
      .prepare(
        `SELECT tbl, pk, col, val, hlc, origin, seq, vals FROM tw_log
         WHERE seq > :after AND ${filters}
         ORDER BY seq, tbl, pk, col LIMIT :n`,
      )
      .raw(true)
      .safeIntegers(true),
    counter: db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck().safeIntegers(true),
  };
}

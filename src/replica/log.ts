/**
 * ChangeLog: the compacted change log `tw_log`, and the Change, the form in
 * which its entries travel.
 *
 * Contract: the log holds the latest clock per (table, key, column) plus one
 * row entry per key (column "": 1 inserted, 0 tombstone), each with its HLC,
 * origin node and local sequence number. A live row entry also stands for
 * every column that has no entry of its own: an insert writes them all at its
 * clock. Values the table holds (tracked columns of existing rows) are not
 * copied into the log; `since` reads them from the table, and the rest
 * (relayed tables, columns the table lacks, entries newer than a tombstone)
 * from the entry. All entries of one row event share one sequence number, so
 * `since` returns them as one Change. `since` pages by whole changes, in
 * sequence order; its cursor is the sequence to resume after, and when
 * nothing more matches it moves to the local counter so filtered-out entries
 * are not read again. Reads run in one read transaction: a page never mixes
 * two states of the log.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { checkInteger, checkName } from "../queue/validate.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { formatHlc, isNodeId } from "./hlc.js";
import { chunkSize, placeholders, rowsOf } from "./rows.js";
import { ALIVE, ROW } from "./triggers.js";
import { compareValues, decodeKey, keyString, type SqlValue, toWire, type WireValue } from "./values.js";

export interface Change {
  table: string;
  /**
   * The table's bucket at the sender. `changesSince` always sets it; `apply`
   * needs it only for a table a relay does not track.
   */
  bucket?: string;
  /** The key's values, in key order. */
  pk: WireValue[];
  /** insert: the row entry says the row exists; delete: a tombstone; update: columns only. */
  op: "insert" | "update" | "delete";
  /** Column values written by this event and not yet overwritten (empty for a delete). */
  columns: Record<string, WireValue>;
  /** 16 hex digits: physical ms << 16 | counter. */
  hlc: string;
  /** Node id of the replica where the write happened. */
  origin: string;
  /** The sender's local sequence number. */
  seq: number;
}

export interface ChangeSet {
  changes: Change[];
  /** Pass back to `changesSince` for the next page. */
  cursor: string;
  hasMore: boolean;
}

export interface ChangesSinceOptions {
  /** Only tables of these buckets (default: every tracked table). */
  buckets?: string[];
  /** At most this many changes (default 1000). */
  limit?: number;
  /** Leave out changes that came from this node (the peer being sent to). */
  excludeOrigin?: string;
  /**
   * Leave out changes this replica applied as received from this node
   * (`apply(changes, { from })`): it has them already. A relay still serves
   * them to every other peer.
   */
  excludeSource?: string;
}

export interface Entry {
  col: string;
  val: SqlValue;
  hlc: bigint;
  origin: string;
  seq: bigint;
  /** The peer the entry was applied from; null for a local write (whose origin is this node). */
  src?: string | null;
}

export interface LogStats {
  /** Clocks the log knows: stored entries plus the columns live row entries stand for. */
  entries: number;
  /** Rows stored in `tw_log`. */
  stored: number;
  /** Keys whose row entry says the row exists. */
  rows: number;
  tombstones: number;
  /** Entries for columns the table does not have (yet): kept, relayed, applied once it does. */
  pending: number;
  /** Entries of tables this replica only relays. */
  relayed: number;
  /** The local sequence counter. */
  lastSeq: number;
}

const DEFAULT_LIMIT = 1000;
const LOAD_CHUNK = 256;
const PUT_CHUNK = 64;
const PUT_WIDTH = 8;
const ALIVE_N = BigInt(ALIVE);
const CURSOR = /^(0|[1-9][0-9]{0,17})$/;

export function parseCursor(cursor: unknown): bigint {
  if (typeof cursor === "bigint" && cursor >= 0n) return cursor;
  if (typeof cursor === "number" && Number.isSafeInteger(cursor) && cursor >= 0) return BigInt(cursor);
  if (typeof cursor === "string" && CURSOR.test(cursor)) return BigInt(cursor);
  throw new InvalidArgumentError(
    "cursor",
    `must be a sequence number >= 0, got ${JSON.stringify(String(cursor))}`,
  );
}

export class ChangeLog {
  private readonly sql: ReturnType<typeof prepare>;
  private readonly puts = new Map<number, Database.Statement>();
  private readonly owns = new Map<number, Database.Statement>();
  private readonly read: (q: Parameters<ChangeLog["page"]>[0]) => ChangeSet;

  constructor(
    private readonly db: Database.Database,
    private readonly catalog: Catalog,
  ) {
    this.sql = prepare(db);
    this.read = db.transaction((q) => this.page(q));
  }

  since(cursor: unknown, options: ChangesSinceOptions = {}): ChangeSet {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const after = parseCursor(cursor);
    const limit = options.limit === undefined ? DEFAULT_LIMIT : checkInteger("limit", options.limit, 1);
    const exclude = nodeOption("excludeOrigin", options.excludeOrigin);
    const source = nodeOption("excludeSource", options.excludeSource);
    let tables: string | null = null;
    if (options.buckets !== undefined) {
      if (!Array.isArray(options.buckets))
        throw new InvalidArgumentError("buckets", "must be an array of names");
      const wanted = new Set(options.buckets.map((b, i) => checkName(`buckets[${i}]`, b)));
      tables = JSON.stringify(
        this.catalog
          .listAll()
          .filter((t) => wanted.has(t.bucket))
          .map((t) => t.id),
      );
    }
    return this.read({ after, origin: exclude, source, tables, limit });
  }

  /** One page, in one read transaction: a page never mixes two states of the log. */
  private page(q: {
    after: bigint;
    origin: string | null;
    source: string | null;
    tables: string | null;
    limit: number;
  }): ChangeSet {
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
      const [tbl, pk, col, val, hlc, origin, seq] = r;
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
        c = { t, tbl, key: pk, seq, hlc, origin, op: "update", stored: [] };
        out.push(c);
      }
      if (col === ROW) c.op = val === ALIVE_N ? "insert" : "delete";
      else c.stored.push(col, val);
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
      if (s.t.relayed || (s.op !== "insert" && s.stored.length === 0)) continue;
      let g = byTable.get(s.t);
      if (!g) {
        g = { keys: new Map(), inserts: new Map() };
        byTable.set(s.t, g);
      }
      const id = keyString(s.key);
      g.keys.set(id, s.key);
      if (s.op === "insert") g.inserts.set(id, s.key);
    }
    const values = new Map<TrackedTable, Map<string, SqlValue[]>>();
    const own = new Map<TrackedTable, Map<string, Set<string>>>();
    for (const [t, g] of byTable) {
      values.set(t, rowsOf(this.db, t).readMany([...g.keys.values()]));
      if (g.inserts.size > 0) own.set(t, this.ownColumns(t.id, [...g.inserts.values()]));
    }
    const out: Change[] = new Array(page.length);
    for (let i = 0; i < page.length; i++) {
      const s = page[i] as Served;
      const { t } = s;
      const columns = Object.create(null) as Record<string, WireValue>;
      const row = values.get(t)?.get(keyString(s.key)) ?? null;
      for (let j = 0; j < s.stored.length; j += 2) {
        const col = s.stored[j] as string;
        const at = row ? t.columns.indexOf(col) : -1;
        columns[col] = toWire(at >= 0 ? (row![at] as SqlValue) : (s.stored[j + 1] as SqlValue));
      }
      if (row && s.op === "insert") {
        // The row entry stands for every column without an entry of its own (all newer).
        const mine = own.get(t)?.get(keyString(s.key));
        for (let j = 0; j < t.columns.length; j++) {
          const col = t.columns[j] as string;
          if (!mine?.has(col)) columns[col] = toWire(row[j] as SqlValue);
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

  /** Every entry of the given keys of one table, read LOAD_CHUNK keys per statement. */
  loadMany(tbl: number, keys: SqlValue[]): Array<Entry & { pk: SqlValue }> {
    const out: Array<Entry & { pk: SqlValue }> = [];
    for (let i = 0; i < keys.length; i += LOAD_CHUNK) {
      const chunk = keys.slice(i, i + LOAD_CHUNK);
      // Padding with NULL keeps one prepared statement: NULL matches no key.
      while (chunk.length < LOAD_CHUNK) chunk.push(null);
      out.push(...(this.sql.loadMany.all(tbl, ...chunk) as Array<Entry & { pk: SqlValue }>));
    }
    return out;
  }

  /** Upserts a local entry (no source). */
  put(tbl: number, pk: SqlValue, e: Entry): void {
    this.sql.put.run(tbl, pk, e.col, e.val, e.hlc, e.origin, e.seq);
  }

  /**
   * Upserts many entries, PUT_CHUNK per statement, given flat: 8 values per
   * entry (tbl, pk, col, val, hlc, origin, seq, src). Each (table, key,
   * column) at most once.
   */
  putMany(flat: unknown[]): void {
    const per = PUT_CHUNK * PUT_WIDTH;
    for (let i = 0; i < flat.length; i += per) {
      const chunk = flat.length - i >= per ? flat.slice(i, i + per) : flat.slice(i);
      this.putStatement(chunk.length / PUT_WIDTH).run(...chunk);
    }
  }

  private putStatement(rows: number): Database.Statement {
    let st = this.puts.get(rows);
    if (!st) {
      st = this.db.prepare(
        `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq, src)
         VALUES ${Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}
         ON CONFLICT (tbl, pk, col) DO UPDATE SET
           val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq,
           src = excluded.src`,
      );
      this.puts.set(rows, st);
    }
    return st;
  }

  /** Drops the key's column entries older than the clock (hlc, origin). */
  prune(tbl: number, pk: SqlValue, hlc: bigint, origin: string): void {
    this.sql.prune.run({ tbl, pk, hlc, origin });
  }

  dropTable(tbl: number): void {
    this.sql.dropTable.run(tbl);
  }

  stats(): LogStats {
    return this.db.transaction(() => {
      const c = this.sql.counts.get() as { entries: number; rows: number | null; tombstones: number | null };
      let pending = 0;
      let implicit = 0;
      let relayed = 0;
      for (const t of this.catalog.listAll()) {
        if (t.relayed) {
          relayed += this.sql.tableEntries.get(t.id) as number;
          continue;
        }
        const cols = JSON.stringify(t.columns);
        pending += this.sql.pending.get(t.id, cols) as number;
        implicit += this.sql.implicit.get({ tbl: t.id, n: t.columns.length, cols }) as number;
      }
      const counter = (this.sql.counter.get() as bigint | undefined) ?? 0n;
      return {
        entries: c.entries + implicit,
        stored: c.entries,
        rows: c.rows ?? 0,
        tombstones: c.tombstones ?? 0,
        pending,
        relayed,
        lastSeq: Number(counter),
      };
    })();
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
}

/** tbl, pk, col, val, hlc, origin, seq. */
type PageRow = [bigint, SqlValue, string, SqlValue, bigint, string, bigint];

function nodeOption(name: string, v: unknown): string | null {
  if (v === undefined) return null;
  if (!isNodeId(v)) throw new InvalidArgumentError(name, `is not a node id: ${JSON.stringify(v)}`);
  return v;
}

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
        `SELECT tbl, pk, col, val, hlc, origin, seq FROM tw_log
         WHERE seq > :after AND ${filters}
         ORDER BY seq, tbl, pk, col LIMIT :n`,
      )
      .raw(true)
      .safeIntegers(true),
    counter: db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck().safeIntegers(true),
    loadMany: db
      .prepare(
        `SELECT pk, col, val, hlc, origin, seq, src FROM tw_log
         WHERE tbl = ? AND pk IN (${Array.from({ length: LOAD_CHUNK }, () => "?").join(", ")})`,
      )
      .safeIntegers(true),
    put: db.prepare(
      `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tbl, pk, col) DO UPDATE SET
         val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq, src = NULL`,
    ),
    prune: db.prepare(
      `DELETE FROM tw_log WHERE tbl = :tbl AND pk = :pk AND col <> ''
         AND (hlc < :hlc OR (hlc = :hlc AND origin < :origin))`,
    ),
    dropTable: db.prepare("DELETE FROM tw_log WHERE tbl = ?"),
    counts: db.prepare(
      `SELECT count(*) AS entries,
              sum(col = '' AND val = 1) AS rows,
              sum(col = '' AND val = 0) AS tombstones
       FROM tw_log`,
    ),
    tableEntries: db.prepare("SELECT count(*) FROM tw_log WHERE tbl = ?").pluck(),
    // Columns a live row entry stands for: every captured column minus those with an entry.
    implicit: db
      .prepare(
        `SELECT count(*) * :n - (SELECT count(*) FROM tw_log AS e
            WHERE e.tbl = :tbl AND e.col IN (SELECT value FROM json_each(:cols))
              AND EXISTS (SELECT 1 FROM tw_log AS r WHERE r.tbl = :tbl AND r.pk = e.pk AND r.col = '' AND r.val = 1))
         FROM tw_log WHERE tbl = :tbl AND col = '' AND val = 1`,
      )
      .pluck(),
    pending: db
      .prepare(
        "SELECT count(*) FROM tw_log WHERE tbl = ? AND col <> '' AND col NOT IN (SELECT value FROM json_each(?))",
      )
      .pluck(),
  };
}

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
import { rowsOf } from "./rows.js";
import { ROW } from "./triggers.js";
import { compareValues, decodeKey, type SqlValue, toWire, type WireValue } from "./values.js";

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
}

export interface Entry {
  col: string;
  val: SqlValue;
  hlc: bigint;
  origin: string;
  seq: bigint;
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
const CURSOR = /^(0|[1-9][0-9]{0,17})$/;

interface LogRow extends Entry {
  /** A bigint: the page is read with safe integers. */
  tbl: bigint;
  pk: SqlValue;
}

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

  constructor(
    private readonly db: Database.Database,
    private readonly catalog: Catalog,
  ) {
    this.sql = prepare(db);
  }

  since(cursor: unknown, options: ChangesSinceOptions = {}): ChangeSet {
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const after = parseCursor(cursor);
    const limit = options.limit === undefined ? DEFAULT_LIMIT : checkInteger("limit", options.limit, 1);
    let exclude: string | null = null;
    if (options.excludeOrigin !== undefined) {
      if (!isNodeId(options.excludeOrigin)) {
        throw new InvalidArgumentError(
          "excludeOrigin",
          `is not a node id: ${JSON.stringify(options.excludeOrigin)}`,
        );
      }
      exclude = options.excludeOrigin;
    }
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
    return this.db.transaction(() => {
      const params = { after, origin: exclude, tables };
      const seqs = this.sql.pageSeqs.all({ ...params, n: limit + 1 }) as bigint[];
      const hasMore = seqs.length > limit;
      const upto = hasMore ? seqs[limit - 1]! : (seqs[seqs.length - 1] ?? after);
      const rows = seqs.length ? (this.sql.page.all({ ...params, upto }) as LogRow[]) : [];
      const changes = this.group(rows);
      const counter = (this.sql.counter.get() as bigint | undefined) ?? 0n;
      const next = hasMore ? upto : counter > upto ? counter : upto;
      return { changes, cursor: next.toString(), hasMore };
    })();
  }

  private group(rows: LogRow[]): Change[] {
    const out: Change[] = [];
    let current: Served | null = null;
    for (const r of rows) {
      const c = current;
      if (!c || r.seq !== c.seq || r.tbl !== c.tbl || compareValues(r.pk, c.key) !== 0) {
        if (c) out.push(this.finish(c));
        const t = this.catalog.getById(Number(r.tbl));
        current = t
          ? { t, tbl: r.tbl, key: r.pk, seq: r.seq, change: newChange(t, r), stored: new Map() }
          : null;
        if (!current) continue;
      }
      const cur = current as Served;
      if (r.col === ROW) cur.change.op = r.val === 1n ? "insert" : "delete";
      else cur.stored.set(r.col, r.val);
    }
    if (current) out.push(this.finish(current));
    return out;
  }

  /** Fills a change's values: from the table where it holds them, else from the entries. */
  private finish(s: Served): Change {
    const { t, change } = s;
    const needsRow = !t.relayed && (change.op === "insert" || s.stored.size > 0);
    const row = needsRow ? rowsOf(this.db, t).read(decodeKey(s.key, t.pk.length)) : null;
    for (const [col, val] of s.stored) {
      change.columns[col] = toWire(row && t.columnSet.has(col) ? (row.get(col) as SqlValue) : val);
    }
    if (row && change.op === "insert") {
      // The row entry stands for every column without an entry of its own (all newer).
      const own = new Set(this.sql.ownColumns.all(s.tbl, s.key) as string[]);
      for (const [col, val] of row) if (!own.has(col)) change.columns[col] = toWire(val);
    }
    return change;
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

  put(tbl: number, pk: SqlValue, e: Entry): void {
    this.sql.put.run(tbl, pk, e.col, e.val, e.hlc, e.origin, e.seq);
  }

  /**
   * Upserts many entries, PUT_CHUNK per statement, given flat: 7 values per
   * entry (tbl, pk, col, val, hlc, origin, seq). Each (table, key, column) at
   * most once.
   */
  putMany(flat: unknown[]): void {
    const per = PUT_CHUNK * 7;
    for (let i = 0; i < flat.length; i += per) {
      const chunk = flat.length - i >= per ? flat.slice(i, i + per) : flat.slice(i);
      this.putStatement(chunk.length / 7).run(...chunk);
    }
  }

  private putStatement(rows: number): Database.Statement {
    let st = this.puts.get(rows);
    if (!st) {
      st = this.db.prepare(
        `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq)
         VALUES ${Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?)").join(", ")}
         ON CONFLICT (tbl, pk, col) DO UPDATE SET
           val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq`,
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

interface Served {
  t: TrackedTable;
  tbl: bigint;
  key: SqlValue;
  seq: bigint;
  change: Change;
  /** The group's column entries as stored (val is NULL where the table holds the value). */
  stored: Map<string, SqlValue>;
}

function newChange(t: TrackedTable, r: LogRow): Change {
  return {
    table: t.name,
    bucket: t.bucket,
    pk: decodeKey(r.pk, t.pk.length).map(toWire),
    op: "update",
    // No prototype: a column named "__proto__" is an ordinary key here.
    columns: Object.create(null) as Record<string, WireValue>,
    hlc: formatHlc(r.hlc),
    origin: r.origin,
    seq: Number(r.seq),
  };
}

function prepare(db: Database.Database) {
  const filters = `(:origin IS NULL OR origin <> :origin)
      AND (:tables IS NULL OR tbl IN (SELECT value FROM json_each(:tables)))`;
  return {
    // The index on seq yields distinct sequence numbers in order: no sort, and it stops at n.
    pageSeqs: db
      .prepare(`SELECT DISTINCT seq FROM tw_log WHERE seq > :after AND ${filters} ORDER BY seq LIMIT :n`)
      .pluck()
      .safeIntegers(true),
    page: db
      .prepare(
        `SELECT tbl, pk, col, val, hlc, origin, seq FROM tw_log
         WHERE seq > :after AND seq <= :upto AND ${filters}
         ORDER BY seq, tbl, pk, col`,
      )
      .safeIntegers(true),
    counter: db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck().safeIntegers(true),
    loadMany: db
      .prepare(
        `SELECT pk, col, val, hlc, origin, seq FROM tw_log
         WHERE tbl = ? AND pk IN (${Array.from({ length: LOAD_CHUNK }, () => "?").join(", ")})`,
      )
      .safeIntegers(true),
    put: db.prepare(
      `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tbl, pk, col) DO UPDATE SET
         val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq`,
    ),
    prune: db.prepare(
      `DELETE FROM tw_log WHERE tbl = :tbl AND pk = :pk AND col <> ''
         AND (hlc < :hlc OR (hlc = :hlc AND origin < :origin))`,
    ),
    dropTable: db.prepare("DELETE FROM tw_log WHERE tbl = ?"),
    ownColumns: db.prepare("SELECT col FROM tw_log WHERE tbl = ? AND pk = ? AND col > ''").pluck(),
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

/**
 * ChangeLog: the compacted change log `tw_log`, and the Change, the form in
 * which its entries travel.
 *
 * Contract: the log holds the latest entry per (table, key, column) plus one
 * row entry per key (column "": 1 inserted, 0 tombstone), each with its HLC,
 * origin node and local sequence number. All entries of one row event share
 * one sequence number, so `since` returns them as one Change. `since` pages by
 * whole changes, in sequence order; its cursor is the sequence to resume
 * after, and when nothing more matches it moves to the local counter so
 * filtered-out entries are not read again. Reads run in one read transaction:
 * a page never mixes two states of the log.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { checkInteger, checkName } from "../queue/validate.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { formatHlc, isNodeId } from "./hlc.js";
import { ROW } from "./triggers.js";
import { compareValues, decodeKey, type SqlValue, toWire, type WireValue } from "./values.js";

export interface Change {
  table: string;
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
  entries: number;
  /** Keys whose row entry says the row exists. */
  rows: number;
  tombstones: number;
  /** Entries for columns the table does not have (yet): kept, relayed, applied once it does. */
  pending: number;
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
          .list()
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
    let current: Change | null = null;
    let key: { seq: bigint; tbl: bigint; pk: SqlValue } | null = null;
    for (const r of rows) {
      if (!current || !key || r.seq !== key.seq || r.tbl !== key.tbl || compareValues(r.pk, key.pk) !== 0) {
        const t = this.catalog.getById(Number(r.tbl));
        if (!t) {
          current = null;
          continue;
        }
        current = newChange(t, r);
        key = { seq: r.seq, tbl: r.tbl, pk: r.pk };
        out.push(current);
      }
      if (r.col === ROW) current.op = r.val === 1n ? "insert" : "delete";
      else current.columns[r.col] = toWire(r.val);
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

  put(tbl: number, pk: SqlValue, e: Entry): void {
    this.sql.put.run(tbl, pk, e.col, e.val, e.hlc, e.origin, e.seq);
  }

  /** Upserts many entries, PUT_CHUNK per statement. Each (table, key, column) at most once. */
  putMany(entries: Array<{ tbl: number; pk: SqlValue; e: Entry }>): void {
    for (let i = 0; i < entries.length; i += PUT_CHUNK) {
      const chunk = entries.slice(i, i + PUT_CHUNK);
      const params: unknown[] = [];
      for (const { tbl, pk, e } of chunk) params.push(tbl, pk, e.col, e.val, e.hlc, e.origin, e.seq);
      this.putStatement(chunk.length).run(...params);
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
      for (const t of this.catalog.list()) {
        pending += this.sql.pending.get(t.id, JSON.stringify(t.columns)) as number;
      }
      const counter = (this.sql.counter.get() as bigint | undefined) ?? 0n;
      return {
        entries: c.entries,
        rows: c.rows ?? 0,
        tombstones: c.tombstones ?? 0,
        pending,
        lastSeq: Number(counter),
      };
    })();
  }
}

function newChange(t: TrackedTable, r: LogRow): Change {
  return {
    table: t.name,
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
    counts: db.prepare(
      `SELECT count(*) AS entries,
              sum(col = '' AND val = 1) AS rows,
              sum(col = '' AND val = 0) AS tombstones
       FROM tw_log`,
    ),
    pending: db
      .prepare(
        "SELECT count(*) FROM tw_log WHERE tbl = ? AND col <> '' AND col NOT IN (SELECT value FROM json_each(?))",
      )
      .pluck(),
  };
}

/**
 * ChangeLog: the compacted change log `tw_log` (its entries travel as
 * Changes, change.ts).
 *
 * Contract: the log holds the latest clock per (table, key, column) plus one
 * row entry per key (column "": 1 inserted, 0 tombstone), each with its HLC,
 * origin node and local sequence number. A live row entry also stands for
 * every column that has no entry of its own: an insert writes them all at its
 * clock. Values the table holds (tracked columns of existing rows) are not
 * copied into the log; `since` reads them from the table, and the rest
 * (columns the table lacks, entries newer than a tombstone) from the entry.
 * A relay has no table: a relayed insert's values live in its row entry
 * (`vals`), so an insert stays one log row there too. All entries of one row event share one sequence number, so
 * `since` returns them as one Change, a page of whole changes at a time (see
 * pager.ts), in one read transaction: a page never mixes two states of the
 * log. An applied entry records the peer it came from (`src`, NULL for a
 * local write), so `since` can leave out what a peer sent
 * (`excludeSource`).
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { isNodeId } from "../node-id.js";
import { checkInteger, checkName, checkObject } from "../validate.js";
import type { Catalog } from "./catalog.js";
import type { ChangeSet } from "./change.js";
import { type PageQuery, Pager } from "./pager.js";
import { fromWire, keyString, type SqlValue, setColumn, toWire, type WireValue } from "./values.js";

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
  /**
   * A relayed table's live row entry: the insert's column values, as a JSON
   * object of wire values (a relay has no table to hold them). Null otherwise.
   */
  vals?: string | null;
}

/** What capture needs of a key's log: its row entry's value and fingerprint, and whether column entries exist. */
export interface CaptureState {
  /** The row entry's value (1 exists, 0 tombstone); undefined with no row entry. */
  val?: SqlValue;
  fp: Uint8Array | null;
  columns: boolean;
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
  /** Clocks of tables this replica only relays (stored entries and the columns their row entries hold). */
  relayed: number;
  /** The local sequence counter. */
  lastSeq: number;
}

const DEFAULT_LIMIT = 1000;
const LOAD_CHUNK = 256;
const PUT_CHUNK = 64;
const PUT_WIDTH = 10;
const LOCAL_WIDTH = 8;
const CURSOR = /^(0|[1-9][0-9]{0,17})$/;

/** A relayed row entry's `vals`: these columns' values, as a JSON object of wire values. */
export function encodeRowValues(cells: Array<[string, SqlValue]>): string {
  const out: Record<string, WireValue> = {};
  for (const [col, val] of cells) setColumn(out, col, toWire(val));
  return JSON.stringify(out);
}

/** The columns and values a relayed row entry's `vals` holds (see `encodeRowValues`). */
export function decodeRowValues(vals: string): Array<[string, SqlValue]> {
  const values = JSON.parse(vals) as Record<string, unknown>;
  const out: Array<[string, SqlValue]> = [];
  for (const col in values) out.push([col, fromWire(values[col])]);
  return out;
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
  private readonly locals = new Map<number, Database.Statement>();
  private readonly read: (q: PageQuery) => ChangeSet;

  constructor(
    private readonly db: Database.Database,
    private readonly catalog: Catalog,
  ) {
    this.sql = prepare(db);
    const pager = new Pager(db, catalog);
    // One read transaction per page: a page never mixes two states of the log.
    this.read = db.transaction((q: PageQuery) => pager.page(q));
  }

  since(cursor: unknown, options: ChangesSinceOptions = {}): ChangeSet {
    checkObject("options", options);
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

  /**
   * Every entry of the given keys of one table, read LOAD_CHUNK keys per
   * statement; or, when the keys are integers packed within 4x their count
   * (a bulk load, an autoincrement id), by one range read, which may also
   * return entries of other keys in the range: the caller keeps those it asked for.
   */
  loadMany(tbl: number, keys: SqlValue[]): Array<Entry & { pk: SqlValue }> {
    const span = integerSpan(keys);
    if (span) return this.sql.loadRange.all(tbl, span.min, span.max) as Array<Entry & { pk: SqlValue }>;
    const out: Array<Entry & { pk: SqlValue }> = [];
    for (let i = 0; i < keys.length; i += LOAD_CHUNK) {
      const chunk = keys.slice(i, i + LOAD_CHUNK);
      // Padding with NULL keeps one prepared statement: NULL matches no key.
      while (chunk.length < LOAD_CHUNK) chunk.push(null);
      out.push(...(this.sql.loadMany.all(tbl, ...chunk) as Array<Entry & { pk: SqlValue }>));
    }
    return out;
  }

  /**
   * Per key (by `keyString`) of one table: its row entry's value and
   * fingerprint and whether it has column entries; read as `loadMany` reads.
   */
  captureState(tbl: number, keys: SqlValue[]): Map<string, CaptureState> {
    const wanted = new Set(keys.map(keyString));
    const out = new Map<string, CaptureState>();
    const take = (rows: Array<[SqlValue, string, SqlValue, Uint8Array | null]>) => {
      for (const [pk, col, val, fp] of rows) {
        const id = keyString(pk);
        if (!wanted.has(id)) continue;
        let s = out.get(id);
        if (!s) {
          s = { fp: null, columns: false };
          out.set(id, s);
        }
        if (col === "") {
          s.val = val;
          s.fp = fp;
        } else s.columns = true;
      }
    };
    const span = integerSpan(keys);
    if (span) take(this.sql.stateRange.all(tbl, span.min, span.max) as never);
    else {
      for (let i = 0; i < keys.length; i += LOAD_CHUNK) {
        const chunk = keys.slice(i, i + LOAD_CHUNK);
        while (chunk.length < LOAD_CHUNK) chunk.push(null);
        take(this.sql.stateMany.all(tbl, ...chunk) as never);
      }
    }
    return out;
  }

  /** Drops a key's column entries (a local row event hides them all: they are older). */
  dropColumnEntries(tbl: number, pk: SqlValue): void {
    this.sql.dropColumns.run(tbl, pk);
  }

  /**
   * Upserts local entries (no source, no relayed values), PUT_CHUNK per
   * statement, given flat: 8 values per entry (tbl, pk, col, val, hlc, origin,
   * seq, fp); a row entry carries its fingerprint, a column entry NULL.
   */
  putLocal(flat: unknown[]): void {
    const per = PUT_CHUNK * LOCAL_WIDTH;
    for (let i = 0; i < flat.length; i += per) {
      const chunk = flat.length - i >= per ? flat.slice(i, i + per) : flat.slice(i);
      const rows = chunk.length / LOCAL_WIDTH;
      let st = this.locals.get(rows);
      if (!st) {
        st = this.db.prepare(
          `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq, fp)
           VALUES ${Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}
           ON CONFLICT (tbl, pk, col) DO UPDATE SET
             val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq,
             src = NULL, vals = NULL, fp = excluded.fp`,
        );
        this.locals.set(rows, st);
      }
      st.run(...chunk);
    }
  }

  /** Upserts a local entry (no source). */
  put(tbl: number, pk: SqlValue, e: Entry): void {
    this.sql.put.run(tbl, pk, e.col, e.val, e.hlc, e.origin, e.seq);
  }

  /**
   * Upserts many entries, PUT_CHUNK per statement, given flat: 10 values per
   * entry (tbl, pk, col, val, hlc, origin, seq, src, vals, fp). Each (table,
   * key, column) at most once.
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
        `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq, src, vals, fp)
         VALUES ${Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")}
         ON CONFLICT (tbl, pk, col) DO UPDATE SET
           val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq,
           src = excluded.src, vals = excluded.vals, fp = excluded.fp`,
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

  /** The last sequence number given, without the counts `stats` reads (a full push's starting point). */
  lastSeq(): number {
    return Number((this.sql.counter.get() as bigint | undefined) ?? 0n);
  }

  stats(): LogStats {
    return this.db.transaction(() => {
      const c = this.sql.counts.get() as { entries: number; rows: number | null; tombstones: number | null };
      let pending = 0;
      let implicit = 0;
      let relayed = 0;
      for (const t of this.catalog.listAll()) {
        if (t.relayed) {
          const r = this.sql.relayedClocks.get({ tbl: t.id }) as { stored: number; implicit: number };
          relayed += r.stored + r.implicit;
          implicit += r.implicit;
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

/** Keys worth one range read: at least RANGE_MIN integers spanning at most 4x their count. */
const RANGE_MIN = 16;

function integerSpan(keys: SqlValue[]): { min: bigint; max: bigint } | null {
  if (keys.length < RANGE_MIN) return null;
  let min = 0n;
  let max = 0n;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (typeof k !== "bigint") return null;
    if (i === 0 || k < min) min = k;
    if (i === 0 || k > max) max = k;
  }
  return max - min < 4n * BigInt(keys.length) ? { min, max } : null;
}

function nodeOption(name: string, v: unknown): string | null {
  if (v === undefined) return null;
  if (!isNodeId(v)) throw new InvalidArgumentError(name, `is not a node id: ${JSON.stringify(v)}`);
  return v;
}

function prepare(db: Database.Database) {
  return {
    counter: db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck().safeIntegers(true),
    loadMany: db
      .prepare(
        `SELECT pk, col, val, hlc, origin, seq, src, vals FROM tw_log
         WHERE tbl = ? AND pk IN (${Array.from({ length: LOAD_CHUNK }, () => "?").join(", ")})`,
      )
      .safeIntegers(true),
    stateMany: db
      .prepare(
        `SELECT pk, col, val, fp FROM tw_log
         WHERE tbl = ? AND pk IN (${Array.from({ length: LOAD_CHUNK }, () => "?").join(", ")})`,
      )
      .raw(true)
      .safeIntegers(true),
    stateRange: db
      .prepare("SELECT pk, col, val, fp FROM tw_log WHERE tbl = ? AND pk BETWEEN ? AND ?")
      .raw(true)
      .safeIntegers(true),
    dropColumns: db.prepare("DELETE FROM tw_log WHERE tbl = ? AND pk = ? AND col > ''"),
    // One seek and a scan along the key: the IN form builds and probes a list per key.
    loadRange: db
      .prepare(
        "SELECT pk, col, val, hlc, origin, seq, src, vals FROM tw_log WHERE tbl = ? AND pk BETWEEN ? AND ?",
      )
      .safeIntegers(true),
    put: db.prepare(
      `INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tbl, pk, col) DO UPDATE SET
         val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq,
         src = NULL, vals = NULL`,
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
    // A relayed table's clocks: its stored entries, plus the columns its row
    // entries hold values of (see Entry.vals) that have no entry of their own.
    relayedClocks: db.prepare(
      `SELECT (SELECT count(*) FROM tw_log WHERE tbl = :tbl) AS stored,
              (SELECT count(*) FROM tw_log AS r, json_each(r.vals) AS j
                WHERE r.tbl = :tbl AND r.col = '' AND r.vals IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM tw_log AS e WHERE e.tbl = :tbl AND e.pk = r.pk AND e.col = j.key)
              ) AS implicit`,
    ),
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

/**
 * Ingester: moves the row events the capture triggers staged in `tw_pending`
 * into the compacted log, set-wise, in one write transaction.
 *
 * Contract: the log ends exactly as if every event had been logged when it
 * was written. In capture order each event takes the next sequence number and
 * the HLC max(previous + 1, ms << 16), ms being when its write happened (a late
 * ingest does not make a write look newer than it was); a row event (an
 * insert, row entry 1, or a delete, 0) drops the key's older column entries;
 * an update writes one entry per changed column, valued NULL (the table holds
 * the value). Updating one cell 10,000 times leaves one entry. The clock is
 * written once per chunk. Staged events are invisible to the log, so
 * everything that reads or compares against it ingests first (replica.ts),
 * and anything that rewrites triggers does so in the transaction of an
 * ingest: a staged mask always refers to the column list of `tw_tracked`.
 * An ingest goes a chunk of the oldest events per transaction; one that
 * fails, or whose process dies, leaves that chunk's events staged.
 */
import type Database from "better-sqlite3";
import type { Store } from "../store.js";
import type { Clock } from "./hlc.js";
import { sqlMillis } from "./hlc.js";
import { MASK_BITS, MASK_DIGITS, UPDATE } from "./triggers.js";

export class Ingester {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly chunk = INGEST_CHUNK,
  ) {
    this.sql = prepare(store.db);
  }

  /** Whether events wait: one indexed probe, cheap enough before every read. */
  waiting(): boolean {
    return this.sql.any.get() !== undefined;
  }

  /** How many rows wait in `tw_pending` (an update of a wide table is several). */
  staged(): number {
    return this.sql.count.get() as number;
  }

  /**
   * Logs every staged event, at most `chunk` (see the constructor) per transaction (so a bulk load
   * staged by another program holds the write lock, and memory, a chunk at a
   * time); returns how many. Each chunk in its own IMMEDIATE transaction, or
   * all as part of the caller's.
   */
  ingest(): number {
    let total = 0;
    while (this.waiting()) {
      const n = this.store.write(() => this.ingestChunk(BigInt(this.chunk)));
      if (n === 0) break;
      total += n;
    }
    return total;
  }

  /** Logs the `chunk` oldest staged events (fewer if fewer wait). */
  private ingestChunk(chunk: bigint): number {
    const { hlc, seq } = this.clock.read();
    const first = this.sql.first.get() as bigint | null;
    if (first === null) return 0;
    const span = this.sql.span.get({ first, upto: first + chunk - 1n }) as Span;
    const at = { hlc, seq, before: first - 1n, last: span.last };
    this.sql.log.run({ ...at, node: this.clock.nodeId });
    this.sql.prune.run(at);
    this.sql.clear.run({ last: span.last });
    const events = span.last - at.before;
    this.clock.observe(events + max(hlc, span.top + at.before), seq + events);
    return Number(events);
  }
}

/** Staged events per ingest transaction. */
export const INGEST_CHUNK = 100_000;

/** The last staged rowid of a chunk, and max(ms << 16 - id) up to it. */
interface Span {
  last: bigint;
  top: bigint;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** How many rows wait; for a reader that has no Ingester (a read-only `status`). */
export const COUNT_STAGED = "SELECT count(*) FROM tw_pending";

const MS = sqlMillis("jd");

/**
 * Event i (1-based, in capture order: rowid - :before, rowids being
 * contiguous, as nothing but an ingest deletes staged rows, and it deletes
 * the oldest, up to :last) gets
 * hlc_i = max(clock + i, i + max_{j <= i}(ms_j << 16 - j)), the closed form of
 * hlc_i = max(hlc_{i-1} + 1, ms_i << 16) from hlc_0 = clock, and seq + i.
 */
function prepare(db: Database.Database) {
  return {
    any: db.prepare("SELECT 1 FROM tw_pending LIMIT 1").pluck(),
    count: db.prepare(COUNT_STAGED).pluck(),
    first: db.prepare("SELECT min(id) FROM tw_pending").pluck().safeIntegers(true),
    span: db
      .prepare(
        `SELECT max(id) AS last, max(${MS} * 65536 - id) AS top FROM tw_pending WHERE id BETWEEN :first AND :upto`,
      )
      .safeIntegers(true),
    // Upserts that keep the greatest sequence: several events of one cell in
    // one ingest may meet in any order and the last still wins. As ChangeLog.put
    // does for a local entry: src NULL (it came from no peer), vals NULL (its
    // values are in the table).
    log: db.prepare(
      `WITH events AS (
         SELECT tbl, pk, kind, mask, id - :before AS i,
                id - :before + max(:hlc, :before + max(${MS} * 65536 - id)
                  OVER (ORDER BY id ROWS UNBOUNDED PRECEDING)) AS hlc
         FROM tw_pending WHERE id <= :last
       ),
       columns AS MATERIALIZED (
         SELECT t.id AS tbl, c.key / ${MASK_BITS} AS word, c.key % ${MASK_BITS} AS bit, c.value AS col
         FROM tw_tracked AS t, json_each(t.cols) AS c
       )
       INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq)
       SELECT e.tbl, e.pk, coalesce(c.col, ''), CASE WHEN e.kind < ${UPDATE} THEN e.kind END, e.hlc, :node, :seq + e.i
       FROM events AS e
       LEFT JOIN columns AS c ON e.kind = ${UPDATE} AND c.tbl = e.tbl
       WHERE e.kind < ${UPDATE} OR (CASE WHEN typeof(e.mask) = 'integer' THEN e.mask
         ELSE CAST(substr(e.mask, c.word * ${MASK_DIGITS} + 1, ${MASK_DIGITS}) AS INTEGER) END >> c.bit) & 1
       ON CONFLICT (tbl, pk, col) DO UPDATE SET
         val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq,
         src = NULL, vals = NULL
       WHERE excluded.seq > tw_log.seq`,
    ),
    // A row event hides every older write of its key's columns (its own sequence
    // number is :seq + id - :before); a key's last row event hides the most.
    prune: db.prepare(
      `DELETE FROM tw_log WHERE (tbl, pk, col) IN (
         SELECT e.tbl, e.pk, e.col FROM tw_pending AS p
         JOIN tw_log AS e ON e.tbl = p.tbl AND e.pk = p.pk AND e.col > '' AND e.seq < :seq + p.id - :before
         WHERE p.kind < ${UPDATE} AND p.id <= :last)`,
    ),
    clear: db.prepare("DELETE FROM tw_pending WHERE id <= :last"),
  };
}

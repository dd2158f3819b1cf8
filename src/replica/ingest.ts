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
 * written once per ingest. Staged events are invisible to the log, so
 * everything that reads or compares against it ingests first (replica.ts),
 * and anything that rewrites triggers does so in the transaction of an
 * ingest: a staged mask always refers to the column list of `tw_tracked`. An
 * ingest that fails, or whose process dies, leaves the events staged.
 */
import type Database from "better-sqlite3";
import type { Store } from "../store.js";
import type { Clock } from "./hlc.js";
import { sqlMillis } from "./hlc.js";
import { MASK_BITS, UPDATE } from "./triggers.js";

export class Ingester {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
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
   * Logs every staged event; returns how many. In its own IMMEDIATE
   * transaction, or as part of the caller's.
   */
  ingest(): number {
    if (!this.waiting()) return 0;
    return this.store.write(() => {
      const { hlc, seq } = this.clock.read();
      const end = this.sql.end.get({ hlc }) as { events: bigint | null; hlc: bigint | null };
      if (end.events === null || end.hlc === null) return 0;
      this.sql.log.run({ hlc, seq, node: this.clock.nodeId });
      this.sql.prune.run();
      this.sql.clear.run();
      this.clock.observe(end.hlc, seq + end.events);
      return Number(end.events);
    });
  }
}

/** How many rows wait; for a reader that has no Ingester (a read-only `status`). */
export const COUNT_STAGED = "SELECT count(*) FROM tw_pending";

const MS = sqlMillis("jd");

/**
 * Event i (1-based, in capture order; the chunk rows of a wide update share
 * their event's i) gets hlc_i = max(clock + i, i + max_{j <= i}(ms_j << 16 - j)),
 * the closed form of hlc_i = max(hlc_{i-1} + 1, ms_i << 16) from hlc_0 = clock.
 */
const EVENTS = `numbered AS (
    SELECT id, tbl, pk, kind, mask, jd,
           sum(kind <= ${UPDATE}) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS i
    FROM tw_pending
  )`;

function prepare(db: Database.Database) {
  return {
    any: db.prepare("SELECT 1 FROM tw_pending LIMIT 1").pluck(),
    count: db.prepare(COUNT_STAGED).pluck(),
    // The last event's number and HLC: what the clock moves to.
    end: db
      .prepare(
        `WITH ${EVENTS}
         SELECT max(i) AS events,
                max(i) + max(:hlc, max(CASE WHEN kind <= ${UPDATE} THEN ${MS} * 65536 - i END)) AS hlc
         FROM numbered`,
      )
      .safeIntegers(true),
    // Upserts that keep the greatest sequence: several events of one cell in
    // one ingest may meet in any order and the last still wins. src = NULL:
    // a local write came from no peer.
    log: db.prepare(
      `WITH ${EVENTS},
       events AS (
         SELECT tbl, pk, kind, mask, i,
                i + max(:hlc, max(CASE WHEN kind <= ${UPDATE} THEN ${MS} * 65536 - i END)
                  OVER (ORDER BY id ROWS UNBOUNDED PRECEDING)) AS hlc
         FROM numbered
       ),
       columns AS MATERIALIZED (
         SELECT t.id AS tbl, ${UPDATE} + c.key / ${MASK_BITS} AS kind, c.key % ${MASK_BITS} AS bit, c.value AS col
         FROM tw_tracked AS t, json_each(t.cols) AS c
       )
       INSERT INTO tw_log (tbl, pk, col, val, hlc, origin, seq)
       SELECT e.tbl, e.pk, coalesce(c.col, ''), CASE WHEN e.kind < ${UPDATE} THEN e.kind END, e.hlc, :node, :seq + e.i
       FROM events AS e
       LEFT JOIN columns AS c ON e.kind >= ${UPDATE} AND c.tbl = e.tbl AND c.kind = e.kind
       WHERE e.kind < ${UPDATE} OR (e.mask >> c.bit) & 1
       ON CONFLICT (tbl, pk, col) DO UPDATE SET
         val = excluded.val, hlc = excluded.hlc, origin = excluded.origin, seq = excluded.seq, src = NULL
       WHERE excluded.seq > tw_log.seq`,
    ),
    // A row event hides every older write of its key's columns.
    prune: db.prepare(
      `DELETE FROM tw_log WHERE (tbl, pk, col) IN (
         SELECT e.tbl, e.pk, e.col FROM tw_pending AS p
         JOIN tw_log AS r ON r.tbl = p.tbl AND r.pk = p.pk AND r.col = ''
         JOIN tw_log AS e ON e.tbl = p.tbl AND e.pk = p.pk AND e.col > '' AND e.seq < r.seq
         WHERE p.kind < ${UPDATE})`,
    ),
    clear: db.prepare("DELETE FROM tw_pending"),
  };
}

/**
 * Lag: how far a reader of this replica's change log stands behind its head —
 * a hub's client by the cursor of its last pull, this replica's own push
 * cursors by theirs.
 *
 * Contract: `readLag` answers, for every position asked about, the sequence
 * distance to the head, how many changes (sequence numbers) after the cursor
 * that reader would be sent — only its buckets' tables, leaving out what
 * came from it, as `changesSince` does — and when the oldest of them was
 * written (its HLC's time), in one set-wise statement however many positions:
 * each is a range scan of the log's seq index, never a loop per row or per
 * reader in JS. Reads only; a cursor that is not a sequence number (a
 * Redis stream id) is answered as null, not guessed at.
 */
import type Database from "better-sqlite3";
import { hlcMillis } from "./hlc.js";

/** A reader of the log: its cursor, the buckets it reads (null: all) and its node (whose own changes it is not sent). */
export interface LagQuery {
  key: string;
  cursor: string;
  buckets: string[] | null;
  node: string | null;
}

export interface Lag {
  /** The log's local sequence counter when this was read. */
  head: number;
  /** The reader's cursor, as a sequence number. */
  cursor: number;
  /** head − cursor: sequence numbers behind, whatever their buckets. */
  seqBehind: number;
  /** Changes (sequence numbers) after the cursor that this reader would be sent. */
  changes: number;
  /** Epoch ms the oldest of them was written (its HLC's time); null when none waits. */
  oldestAt: number | null;
}

const SEQ = /^(0|[1-9][0-9]{0,17})$/;

/**
 * The positions as one JSON array joined with the log: each is a range scan
 * of tw_log_seq from its cursor. A reader's buckets become its table ids
 * once, as a ",1,4," string (tw_tracked covers relayed tables too), which
 * each entry is looked up in without a subquery per row: a correlated
 * json_each per entry cost twice the scan. The source rule is the pager's.
 */
const LAG = `
  WITH w AS MATERIALIZED (
    SELECT k, after, node,
           CASE WHEN buckets IS NULL THEN NULL ELSE ',' || coalesce((
             SELECT group_concat(t.id) FROM tw_tracked t
             WHERE t.bucket IN (SELECT value FROM json_each(buckets))), '') || ',' END AS tables
    FROM (SELECT json_extract(value, '$.k') AS k, json_extract(value, '$.after') AS after,
                 json_extract(value, '$.buckets') AS buckets, json_extract(value, '$.node') AS node
          FROM json_each(:wanted))
  )
  SELECT w.k AS k, count(DISTINCT l.seq) AS changes, min(l.hlc) AS oldest
  FROM w LEFT JOIN tw_log l
    ON l.seq > w.after
   AND (w.tables IS NULL OR instr(w.tables, ',' || l.tbl || ',') > 0)
   AND (w.node IS NULL OR (l.origin <> w.node
         AND (l.src IS NOT w.node OR l.origin = (SELECT node FROM tw_clock WHERE id = 0))))
  GROUP BY w.k`;

const HEAD = "SELECT seq FROM tw_clock WHERE id = 0";

/** Prepared once per connection: the status thread reads with one connection for its life. */
const prepared = new WeakMap<Database.Database, { head: Database.Statement; lag: Database.Statement }>();

function statements(db: Database.Database) {
  let s = prepared.get(db);
  if (!s) {
    s = { head: db.prepare(HEAD).pluck().safeIntegers(true), lag: db.prepare(LAG).safeIntegers(true) };
    prepared.set(db, s);
  }
  return s;
}

export function readLag(db: Database.Database, wanted: LagQuery[]): Map<string, Lag | null> {
  const out = new Map<string, Lag | null>();
  const asked = wanted.filter((q) => {
    const ok = SEQ.test(q.cursor);
    if (!ok) out.set(q.key, null);
    return ok;
  });
  if (asked.length === 0) return out;
  const sql = statements(db);
  const read = db.transaction(() => {
    const head = Number((sql.head.get() as bigint | undefined) ?? 0n);
    const rows = sql.lag.all({
      wanted: JSON.stringify(
        asked.map((q) => ({
          k: q.key,
          after: Number(q.cursor),
          buckets: q.buckets === null ? null : JSON.stringify(q.buckets),
          node: q.node,
        })),
      ),
    }) as Array<{ k: string; changes: bigint; oldest: bigint | null }>;
    return { head, rows };
  });
  const { head, rows } = read();
  const found = new Map(rows.map((r) => [r.k, r]));
  for (const q of asked) {
    const cursor = Number(q.cursor);
    const r = found.get(q.key);
    out.set(q.key, {
      head,
      cursor,
      seqBehind: Math.max(0, head - cursor),
      changes: r ? Number(r.changes) : 0,
      oldestAt: r?.oldest == null ? null : hlcMillis(r.oldest),
    });
  }
  return out;
}

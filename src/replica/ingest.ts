/**
 * Ingester: moves the row events the capture triggers staged in `tw_pending`
 * into the compacted log, in one write transaction per chunk.
 *
 * Contract: in capture order each event takes the next sequence number and
 * the HLC max(previous + 1, ms << 16), ms being when its write happened (a late
 * ingest does not make a write look newer than it was). Then each key the
 * chunk touched is logged from what its table holds now, against what the
 * log last saw of it (its row entry and fingerprint, fingerprint.ts):
 *
 * - the row is gone: a tombstone at its last delete event (or, with none, at
 *   its last event, when the log held it as existing);
 * - the row exists and the chunk inserted it (or the log did not hold it as
 *   existing): its row entry, at the insert, or at its last event when updates
 *   followed; a row event drops the key's older column entries;
 * - otherwise an entry per column whose fingerprint differs, at the key's
 *   last event, valued NULL (the table holds the value).
 *
 * So a key with one event between ingests is logged exactly as if each
 * event were logged when it was written; several events of one key in a
 * chunk coalesce into what they did (a value changed and changed back is no
 * change). Updating one cell 10,000 times leaves one entry. The clock is
 * written once per chunk. Staged events are invisible to the log, so
 * everything that reads or compares against it ingests first (replica.ts).
 * Events of a table that is not tracked, or whose capture is broken (see
 * `Catalog.problem`), are dropped: the reconciliation that restores capture
 * finds what they did (evolve.ts). An ingest goes a chunk of the oldest
 * events per transaction; one that fails, or whose process dies, leaves that
 * chunk's events staged.
 */
import type Database from "better-sqlite3";
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { changedColumns, fingerprint, storeFingerprint } from "./fingerprint.js";
import type { Clock } from "./hlc.js";
import { sqlMillis } from "./hlc.js";
import type { CaptureState, ChangeLog } from "./log.js";
import { rowsOf } from "./rows.js";
import { ALIVE, DELETED, ROW, UPDATE } from "./triggers.js";
import { keyString, type SqlValue } from "./values.js";

/** An event's clock: its HLC and sequence number. */
interface At {
  hlc: bigint;
  seq: bigint;
}

/** What the chunk did to one key. */
interface KeyEvents {
  key: SqlValue;
  last: At;
  /** The last insert or delete, with its kind; `after`: updates followed it. */
  row: (At & { kind: number }) | null;
  after: boolean;
}

const ALIVE_N = BigInt(ALIVE);
const DELETED_N = BigInt(DELETED);
const UPDATE_N = BigInt(UPDATE);

export class Ingester {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
    private readonly chunk = INGEST_CHUNK,
  ) {
    this.sql = prepare(store.db);
  }

  /** Whether events wait: one indexed probe, cheap enough before every read. */
  waiting(): boolean {
    return this.sql.any.get() !== undefined;
  }

  /** How many events wait in `tw_pending`. */
  staged(): number {
    return this.sql.count.get() as number;
  }

  /**
   * Logs every staged event, at most `chunk` (see the constructor) per
   * transaction (so a bulk load staged by another program holds the write
   * lock, and memory, a chunk at a time); returns how many. Each chunk in its
   * own IMMEDIATE transaction, or all as part of the caller's.
   */
  ingest(): number {
    let total = 0;
    while (this.waiting()) {
      const n = this.store.write(() => this.ingestChunk(BigInt(this.chunk)), "replica.ingest");
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
    const before = first - 1n;
    const byTable = new Map<number, Map<string, KeyEvents>>();
    for (const [tbl, pk, kind, i, h] of this.sql.events.all({ hlc, before, last: span.last }) as EventRow[]) {
      let keys = byTable.get(Number(tbl));
      if (!keys) {
        keys = new Map();
        byTable.set(Number(tbl), keys);
      }
      const id = keyString(pk);
      const at = { hlc: h, seq: seq + i };
      let k = keys.get(id);
      if (!k) {
        k = { key: pk, last: at, row: null, after: false };
        keys.set(id, k);
      }
      k.last = at;
      if (kind === UPDATE_N) k.after = k.row !== null;
      else {
        k.row = { hlc: at.hlc, seq: at.seq, kind: Number(kind) };
        k.after = false;
      }
    }
    this.catalog.refresh();
    for (const [tbl, keys] of byTable) {
      const t = this.catalog.getById(tbl);
      if (!t || t.relayed || this.catalog.problem(t.name) !== null) continue;
      this.logTable(t, keys);
    }
    this.sql.clear.run({ last: span.last });
    const events = span.last - before;
    this.clock.observe(events + max(hlc, span.top + before), seq + events);
    return Number(events);
  }

  /** Logs the keys of one table the chunk touched, from the table and the log's state of them. */
  private logTable(t: TrackedTable, keys: Map<string, KeyEvents>): void {
    const db = this.store.db;
    const node = this.clock.nodeId;
    const list = [...keys.values()].map((k) => k.key);
    const rows = rowsOf(db, t).readMany(list);
    const state = this.log.captureState(t.id, list);
    const flat: unknown[] = [];
    const rowEntry = (k: KeyEvents, s: CaptureState | undefined, at: At, val: bigint, fp: Buffer | null) => {
      flat.push(t.id, k.key, ROW, val, at.hlc, node, at.seq, fp);
      // Every column entry the log holds is older than an event of this chunk.
      if (s?.columns) this.log.dropColumnEntries(t.id, k.key);
    };
    for (const [id, k] of keys) {
      const values = rows.get(id);
      const s = state.get(id);
      const alive = s?.val === ALIVE_N;
      if (!values) {
        if (k.row?.kind === DELETED) rowEntry(k, s, k.row, DELETED_N, null);
        else if (alive) rowEntry(k, s, k.last, DELETED_N, null);
        continue;
      }
      const fp = fingerprint(values);
      if (k.row || !alive) {
        const at = k.row?.kind === ALIVE && !k.after ? k.row : k.last;
        rowEntry(k, s, at, ALIVE_N, fp);
        continue;
      }
      const changed = changedColumns(s?.fp, fp) ?? t.columns.map((_, i) => i);
      if (changed.length === 0) continue;
      for (const i of changed) flat.push(t.id, k.key, t.columns[i], null, k.last.hlc, node, k.last.seq, null);
      storeFingerprint(db, t.id, k.key, fp);
    }
    this.log.putLocal(flat);
  }
}

/** Staged events per ingest transaction. */
export const INGEST_CHUNK = 100_000;

/** The last staged rowid of a chunk, and max(ms << 16 - id) up to it. */
interface Span {
  last: bigint;
  top: bigint;
}

/** tbl, pk, kind, i (1-based position in the chunk), hlc. */
type EventRow = [bigint, SqlValue, bigint, bigint, bigint];

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
    events: db
      .prepare(
        `SELECT tbl, pk, kind, id - :before,
                id - :before + max(:hlc, :before + max(${MS} * 65536 - id)
                  OVER (ORDER BY id ROWS UNBOUNDED PRECEDING))
         FROM tw_pending WHERE id <= :last ORDER BY id`,
      )
      .raw(true)
      .safeIntegers(true),
    clear: db.prepare("DELETE FROM tw_pending WHERE id <= :last"),
  };
}

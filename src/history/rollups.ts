/**
 * Rollups: per-minute and per-hour totals of what a process measured, kept
 * in SQLite (tw_rollups, migration 14) so history survives a restart.
 *
 * Contract: `add` (a count) and `observe` (a duration, ms) only touch memory:
 * a few map lookups, no I/O, so they may sit on a hot path; each goes in the
 * minute of its `at` (default: now). `flush` writes every minute gathered
 * since the last flush in one IMMEDIATE transaction, each into its minute's
 * row and its hour's, merging into rows an earlier flush (of this process or
 * another on the same file) wrote for the same period, series and label, and
 * deletes minute rows past `retentionMs` (default a day) and hour rows past
 * `hourRetentionMs` (default 30 days). A flush that fails (the file locked by
 * another program) keeps what it could not write for the next one, minus
 * minutes already past the hours' retention. `read` answers a series' rows of
 * one step in a range, with what is still in memory merged in, so the current
 * minute shows before it is flushed. A series is either counted or observed, never both:
 * a count row has no histogram; a latency row's count is its observations.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import type { Store } from "../store.js";
import { decode, emptyHistogram, encodeBuckets, type Histogram, merge, observe } from "./histogram.js";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export type Step = typeof MINUTE_MS | typeof HOUR_MS;
export const DEFAULT_RETENTION_MS = 86_400_000;
export const DEFAULT_HOUR_RETENTION_MS = 30 * 86_400_000;
/** Labels come from job types and peer ids, both bounded already; this keeps a row small whatever. */
const MAX_LABEL = 200;

export interface RollupsOptions {
  /** Minute rows older than this are deleted at each flush, ms (default a day). */
  retentionMs?: number;
  /** Hour rows older than this are deleted at each flush, ms (default 30 days; at least retentionMs). */
  hourRetentionMs?: number;
  /** The clock (epoch ms); tests move it. */
  now?: () => number;
}

interface Cell {
  count: number;
  hist: Histogram | null;
}

/** One period (a minute or an hour) of one label of a series. */
export interface Rollup {
  /** Epoch ms of the period's start. */
  at: number;
  label: string;
  count: number;
  /** The minute's durations; null for a counted series. */
  hist: Histogram | null;
}

/** series -> label -> cell, for one minute. */
type Minute = Map<string, Map<string, Cell>>;

interface StoredRow {
  at: number;
  label: string;
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  hist: string | null;
}

/** The start of the period of `step` that `ms` falls in. */
export function periodOf(ms: number, step: number): number {
  return ms - (((ms % step) + step) % step);
}

export function minuteOf(ms: number): number {
  return periodOf(ms, MINUTE_MS);
}

export class Rollups {
  readonly retentionMs: number;
  readonly hourRetentionMs: number;
  private readonly now: () => number;
  private readonly minutes = new Map<number, Minute>();
  private current: Minute | undefined;
  private currentStart = 0;
  private currentEnd = 0;
  private readonly write: (minutes: Map<number, Minute>, now: number) => number;
  private readonly rows: Database.Statement;
  private readonly labelRows: Database.Statement;

  constructor(
    readonly store: Store,
    options: RollupsOptions = {},
  ) {
    const retention = options.retentionMs ?? DEFAULT_RETENTION_MS;
    if (!Number.isInteger(retention) || retention < MINUTE_MS)
      throw new InvalidArgumentError("retentionMs", `must be an integer of at least ${MINUTE_MS}`);
    this.retentionMs = retention;
    const hours = options.hourRetentionMs ?? Math.max(DEFAULT_HOUR_RETENTION_MS, retention);
    if (!Number.isInteger(hours) || hours < retention)
      throw new InvalidArgumentError("hourRetentionMs", "must be an integer of at least retentionMs");
    this.hourRetentionMs = hours;
    this.now = options.now ?? Date.now;
    const db = store.db;
    const addCount = db.prepare(
      `INSERT INTO tw_rollups (series, step, at, label, count, sum) VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (series, step, at, label) DO UPDATE SET count = count + excluded.count`,
    );
    const stored = db.prepare(
      "SELECT count, sum, min, max, hist FROM tw_rollups WHERE series = ? AND step = ? AND at = ? AND label = ?",
    );
    const putHist = db.prepare(
      `INSERT INTO tw_rollups (series, step, at, label, count, sum, min, max, hist) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (series, step, at, label) DO UPDATE SET
         count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max, hist = excluded.hist`,
    );
    const prune = db.prepare("DELETE FROM tw_rollups WHERE step = ? AND at < ?");
    const put = (series: string, step: Step, at: number, label: string, cell: Cell) => {
      if (!cell.hist) {
        addCount.run(series, step, at, label, cell.count);
        return;
      }
      const old = stored.get(series, step, at, label) as StoredRow | undefined;
      // Into a copy: the same cell goes into its minute's row and its hour's.
      const h = merge(old?.hist ? decode({ ...old, hist: old.hist }) : emptyHistogram(), cell.hist);
      putHist.run(series, step, at, label, h.count, h.sum, h.min, h.max, encodeBuckets(h));
    };
    this.write = store.writer((minutes: Map<number, Minute>, now: number) => {
      for (const [minute, bySeries] of minutes) {
        for (const [series, byLabel] of bySeries) {
          for (const [label, cell] of byLabel) {
            put(series, MINUTE_MS, minute, label, cell);
            put(series, HOUR_MS, periodOf(minute, HOUR_MS), label, cell);
          }
        }
      }
      return (
        prune.run(MINUTE_MS, minuteOf(now) - this.retentionMs).changes +
        prune.run(HOUR_MS, periodOf(now, HOUR_MS) - this.hourRetentionMs).changes
      );
    });
    this.rows = db.prepare(
      `SELECT at, label, count, sum, min, max, hist FROM tw_rollups
       WHERE series = ? AND step = ? AND at >= ? AND at < ? ORDER BY at`,
    );
    this.labelRows = db.prepare(
      `SELECT at, label, count, sum, min, max, hist FROM tw_rollups
       WHERE series = ? AND step = ? AND at >= ? AND at < ? AND label = ? ORDER BY at`,
    );
  }

  /**
   * Counts `n` events of `series` under `label` in the minute of `at` (epoch
   * ms; default now). A caller that knows when its event happened passes it
   * and spares a clock read on its hot path.
   */
  add(series: string, label: string, n = 1, at?: number): void {
    this.cell(series, label, at ?? this.now()).count += n;
  }

  /** Counts one duration (ms) of `series` under `label` in the minute of `at` (default now). */
  observe(series: string, label: string, ms: number, at?: number): void {
    const cell = this.cell(series, label, at ?? this.now());
    cell.hist ??= emptyHistogram();
    observe(cell.hist, ms);
    cell.count = cell.hist.count;
  }

  /** Minutes gathered and not yet written. */
  get pendingMinutes(): number {
    return this.minutes.size;
  }

  /**
   * Writes what was gathered in one transaction and prunes past the retention;
   * returns the rows pruned. Throws what the write threw (after the store's
   * busy retries), keeping the data for the next flush.
   */
  flush(): number {
    const now = this.now();
    const before = periodOf(now, HOUR_MS) - this.hourRetentionMs;
    for (const minute of this.minutes.keys()) if (minute < before) this.minutes.delete(minute);
    const pruned = this.write(this.minutes, now);
    this.minutes.clear();
    this.current = undefined;
    this.currentEnd = 0;
    return pruned;
  }

  /**
   * The rows of `series` of `step` (a minute's or an hour's) with from <= at < to (and of
   * `label` only, when given), flushed or not.
   */
  read(series: string, from: number, to: number, label?: string, step: Step = MINUTE_MS): Rollup[] {
    const stored = (
      label === undefined
        ? this.rows.all(series, step, from, to)
        : this.labelRows.all(series, step, from, to, label)
    ) as StoredRow[];
    const out = new Map<string, Rollup>();
    for (const r of stored) {
      const hist = r.hist === null ? null : decode({ ...r, hist: r.hist });
      out.set(`${r.at}\0${r.label}`, { at: r.at, label: r.label, count: r.count, hist });
    }
    for (const [minute, bySeries] of this.minutes) {
      const at = periodOf(minute, step);
      if (at < from || at >= to) continue;
      for (const [l, cell] of bySeries.get(series) ?? []) {
        if (label !== undefined && l !== label) continue;
        const key = `${at}\0${l}`;
        const had = out.get(key);
        if (!had) {
          out.set(key, {
            at,
            label: l,
            count: cell.count,
            hist: cell.hist && merge(emptyHistogram(), cell.hist),
          });
          continue;
        }
        had.count += cell.count;
        if (cell.hist) had.hist = merge(had.hist ?? emptyHistogram(), cell.hist);
      }
    }
    return [...out.values()].sort((a, b) => a.at - b.at);
  }

  private cell(series: string, label: string, now: number): Cell {
    if (now >= this.currentEnd || now < this.currentStart || !this.current) {
      this.currentStart = minuteOf(now);
      this.currentEnd = this.currentStart + MINUTE_MS;
      let m = this.minutes.get(this.currentStart);
      if (!m) {
        m = new Map();
        this.minutes.set(this.currentStart, m);
      }
      this.current = m;
    }
    let byLabel = this.current.get(series);
    if (!byLabel) {
      byLabel = new Map();
      this.current.set(series, byLabel);
    }
    const key = label.length > MAX_LABEL ? label.slice(0, MAX_LABEL) : label;
    let cell = byLabel.get(key);
    if (!cell) {
      cell = { count: 0, hist: null };
      byLabel.set(key, cell);
    }
    return cell;
  }
}

/**
 * Inserts: how new jobs enter one queue's rows of `tw_jobs` — one at a time,
 * or in a batch whose keyless rows go 100 per INSERT statement.
 *
 * Contract: a job with a dedup key that an unfinished job of the queue holds
 * is not inserted: the holder comes back instead. `batch` and a keyed `one`
 * are each one IMMEDIATE transaction (a batch is all or nothing); a keyless
 * `one` is a single INSERT, atomic on its own, so it runs in autocommit (the
 * BEGIN/COMMIT pair around it cost ~2 µs of ~35 per add). `insert` runs
 * inside the caller's (firePeriodic's) transaction.
 */
import type Database from "better-sqlite3";
import type { Store } from "../store.js";
import { type JobRow, toJob } from "./rows.js";
import type { Job } from "./types.js";
import { type NormalizedAdd, pendingJob } from "./validate.js";

/** Rows per bulk INSERT: 100 rows x 10 values stays far below SQLite's 32,766 bound parameters. */
const BULK_ROWS = 100;

export class Inserts {
  private readonly sql;
  /** Adds one job in a transaction of its own. */
  readonly one: (r: NormalizedAdd, now: number) => Job;
  /** Adds every row in one transaction, in order. */
  readonly batch: (rows: NormalizedAdd[], now: number) => Job[];

  constructor(
    store: Store,
    private readonly name: string,
  ) {
    const db: Database.Database = store.db;
    this.sql = {
      insert: db.prepare<
        [
          string,
          string,
          string,
          number,
          number,
          number,
          string | null,
          string | null,
          number | null,
          number,
          string | null,
        ]
      >(
        `INSERT INTO tw_jobs (queue, type, payload, state, priority, run_at, max_attempts, backoff, key, timeout_ms, created_at, trace)
         VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      // No RETURNING: under AUTOINCREMENT and the write lock one statement's rows take
      // consecutive ids, so the last id names them all (RETURNING buffered 100 row objects).
      insertBulk: db.prepare<unknown[]>(
        `INSERT INTO tw_jobs (queue, type, payload, state, priority, run_at, max_attempts, backoff, key, timeout_ms, created_at, trace)
         VALUES ${Array.from({ length: BULK_ROWS }, () => "(?, ?, ?, 'pending', ?, ?, ?, ?, NULL, ?, ?, ?)").join(", ")}`,
      ),
      byKey: db.prepare<[string, string]>(
        `SELECT * FROM tw_jobs WHERE queue = ? AND key = ? AND state IN ('pending', 'running')`,
      ),
    };
    const keyed = store.writer((r: NormalizedAdd, now: number) => this.insert(r, now), "queue.add");
    this.one = (r, now) =>
      r.key === null ? store.retrying(() => this.insertRow(r, now), "queue.add") : keyed(r, now);
    this.batch = store.writer(
      (rows: NormalizedAdd[], now: number) => this.insertBatch(rows, now),
      "queue.add",
    );
  }

  private insertBatch(rows: NormalizedAdd[], now: number): Job[] {
    const jobs = new Array<Job>(rows.length);
    const keyless: number[] = [];
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (r.key === null) keyless.push(i);
      else jobs[i] = this.insert(r, now);
    }
    // Keyless rows go in INSERT statements of BULK_ROWS rows each (~3x the rate of
    // one statement per row), the bound values written into one reused array.
    const args = new Array<unknown>(BULK_ROWS * 10);
    let k = 0;
    for (; k + BULK_ROWS <= keyless.length; k += BULK_ROWS) {
      for (let n = 0, a = 0; n < BULK_ROWS; n++) {
        const r = rows[keyless[k + n]!]!;
        args[a++] = this.name;
        args[a++] = r.type;
        args[a++] = r.payload;
        args[a++] = r.priority;
        args[a++] = r.runAt;
        args[a++] = r.maxAttempts;
        args[a++] = r.backoff;
        args[a++] = r.timeoutMs;
        args[a++] = now;
        args[a++] = r.trace;
      }
      const first = Number(this.sql.insertBulk.run(args).lastInsertRowid) - BULK_ROWS + 1;
      for (let n = 0; n < BULK_ROWS; n++) {
        const i = keyless[k + n]!;
        jobs[i] = this.newJob(first + n, rows[i]!, now);
      }
    }
    for (; k < keyless.length; k++) jobs[keyless[k]!] = this.insert(rows[keyless[k]!]!, now);
    return jobs;
  }

  /** Inside a write transaction. A taken dedup key yields the existing job. */
  insert(r: NormalizedAdd, now: number): Job {
    // Look the key up first: an INSERT that loses on the unique key still spends an AUTOINCREMENT id.
    if (r.key !== null) {
      const existing = this.sql.byKey.get(this.name, r.key) as JobRow | undefined;
      if (existing) return toJob(existing);
    }
    return this.insertRow(r, now);
  }

  /** The INSERT itself, with no key lookup. */
  private insertRow(r: NormalizedAdd, now: number): Job {
    const info = this.sql.insert.run(
      this.name,
      r.type,
      r.payload,
      r.priority,
      r.runAt,
      r.maxAttempts,
      r.backoff,
      r.key,
      r.timeoutMs,
      now,
      r.trace,
    );
    return this.newJob(Number(info.lastInsertRowid), r, now);
  }

  private newJob(id: number, r: NormalizedAdd, now: number): Job {
    return pendingJob(id, this.name, r, now, r.value);
  }
}

/**
 * Inserts: how new jobs enter one queue's rows of `tw_jobs` — one at a time,
 * or in a batch whose keyless rows go 100 per INSERT statement.
 *
 * Contract: a job with a dedup key that an unfinished job of the queue holds
 * is not inserted: the holder comes back instead. `one` and `batch` are each
 * one IMMEDIATE transaction (a batch is all or nothing); `insert` runs inside
 * the caller's (firePeriodic's) transaction.
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
      insertBulk: db.prepare<unknown[]>(
        `INSERT INTO tw_jobs (queue, type, payload, state, priority, run_at, max_attempts, backoff, key, timeout_ms, created_at, trace)
         VALUES ${Array.from({ length: BULK_ROWS }, () => "(?, ?, ?, 'pending', ?, ?, ?, ?, NULL, ?, ?, ?)").join(", ")}
         RETURNING id`,
      ),
      byKey: db.prepare<[string, string]>(
        `SELECT * FROM tw_jobs WHERE queue = ? AND key = ? AND state IN ('pending', 'running')`,
      ),
    };
    this.one = store.writer((r: NormalizedAdd, now: number) => this.insert(r, now), "queue.add");
    this.batch = store.writer(
      (rows: NormalizedAdd[], now: number) => this.insertBatch(rows, now),
      "queue.add",
    );
  }

  private insertBatch(rows: NormalizedAdd[], now: number): Job[] {
    const jobs = new Array<Job>(rows.length);
    const keyless: number[] = [];
    rows.forEach((r, i) => {
      if (r.key === null) keyless.push(i);
      else jobs[i] = this.insert(r, now);
    });
    // Keyless rows go in INSERT statements of BULK_ROWS rows each (~3x the rate of
    // one statement per row); RETURNING ids ascend in the order of the VALUES.
    let k = 0;
    for (; k + BULK_ROWS <= keyless.length; k += BULK_ROWS) {
      const chunk = keyless.slice(k, k + BULK_ROWS);
      const args: unknown[] = [];
      for (const i of chunk) {
        const r = rows[i]!;
        args.push(
          this.name,
          r.type,
          r.payload,
          r.priority,
          r.runAt,
          r.maxAttempts,
          r.backoff,
          r.timeoutMs,
          now,
          r.trace,
        );
      }
      const ids = (this.sql.insertBulk.all(args) as Array<{ id: number }>)
        .map((r) => r.id)
        .sort((a, b) => a - b);
      chunk.forEach((i, n) => {
        jobs[i] = this.newJob(ids[n]!, rows[i]!, now);
      });
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

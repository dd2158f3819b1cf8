/**
 * Schedules: the periodic jobs of one queue, in `tw_periodic`.
 *
 * Contract: `fireDue` runs inside the caller's IMMEDIATE transaction, reads the
 * schedules whose time has come, enqueues one job for each through the given
 * function and advances `next_run_at` — all in that one transaction, which is
 * what makes a period fire once across any number of processes. Saving a
 * schedule again keeps its next run unless its interval or cron changed, and
 * keeps it paused if it was: an application that re-declares its schedules at
 * every start must not undo an operator's pause. A paused schedule never fires;
 * `resume` moves its next run to the first slot after the moment it resumes
 * (the interval's grid, or the cron's next time), so the runs missed while
 * paused are skipped, not fired in a burst.
 */
import type Database from "better-sqlite3";
import { nextPeriodicRun, type PeriodicSpec, periodicJob } from "./periodic.js";
import type { PeriodicJob } from "./types.js";
import type { NormalizedAdd } from "./validate.js";

export class Schedules {
  private readonly sql;

  constructor(
    db: Database.Database,
    private readonly queue: string,
  ) {
    this.sql = {
      upsert: db.prepare(
        `INSERT INTO tw_periodic (queue, name, type, payload, every_ms, cron, timezone, priority, max_attempts,
                                  next_run_at, created_at)
         VALUES (@queue, @name, @type, @payload, @everyMs, @cron, @timezone, @priority, @maxAttempts,
                 @nextRunAt, @now)
         ON CONFLICT (queue, name) DO UPDATE SET
           type = excluded.type, payload = excluded.payload, priority = excluded.priority,
           max_attempts = excluded.max_attempts, timezone = excluded.timezone,
           next_run_at = CASE WHEN every_ms IS excluded.every_ms AND cron IS excluded.cron
                              THEN next_run_at ELSE excluded.next_run_at END,
           every_ms = excluded.every_ms, cron = excluded.cron`,
      ),
      remove: db.prepare<[string, string]>(`DELETE FROM tw_periodic WHERE queue = ? AND name = ?`),
      list: db.prepare<[string]>(`SELECT * FROM tw_periodic WHERE queue = ? ORDER BY name`),
      due: db.prepare<[string, number]>(
        `SELECT * FROM tw_periodic WHERE queue = ? AND next_run_at <= ? AND paused_at IS NULL
          ORDER BY next_run_at`,
      ),
      get: db.prepare<[string, string]>(`SELECT * FROM tw_periodic WHERE queue = ? AND name = ?`),
      pause: db.prepare<[number, string, string]>(
        `UPDATE tw_periodic SET paused_at = ? WHERE queue = ? AND name = ? AND paused_at IS NULL`,
      ),
      resume: db.prepare<[number, string, string]>(
        `UPDATE tw_periodic SET paused_at = NULL, next_run_at = ?
          WHERE queue = ? AND name = ? AND paused_at IS NOT NULL`,
      ),
      advance: db.prepare<[number, number, string, string]>(
        `UPDATE tw_periodic SET next_run_at = ?, last_run_at = ? WHERE queue = ? AND name = ?`,
      ),
    };
  }

  upsert(spec: PeriodicSpec, now: number): void {
    this.sql.upsert.run({ ...spec, queue: this.queue, now });
  }

  remove(name: string): boolean {
    return this.sql.remove.run(this.queue, name).changes > 0;
  }

  list(): PeriodicJob[] {
    return (this.sql.list.all(this.queue) as PeriodicRow[]).map(toPeriodic);
  }

  /** Inside a write transaction: false when there is no such schedule or it is already paused. */
  pause(name: string, now: number): boolean {
    return this.sql.pause.run(now, this.queue, name).changes > 0;
  }

  /** Inside a write transaction: false when there is no such schedule or it is not paused. */
  resume(name: string, now: number): boolean {
    const p = this.sql.get.get(this.queue, name) as PeriodicRow | undefined;
    if (p?.paused_at === null || p === undefined) return false;
    // Strictly after now: a slot that falls due at the very moment of resuming was missed too.
    const next = nextPeriodicRun(
      { everyMs: p.every_ms, cron: p.cron, timezone: p.timezone },
      p.next_run_at,
      now,
    );
    return this.sql.resume.run(next, this.queue, name).changes > 0;
  }

  /** Inside a write transaction: enqueues each due schedule's job and advances it. Returns their types. */
  fireDue(now: number, enqueue: (job: NormalizedAdd) => void): string[] {
    const due = this.sql.due.all(this.queue, now) as PeriodicRow[];
    for (const p of due) {
      enqueue(periodicJob({ ...p, maxAttempts: p.max_attempts }, now));
      const next = nextPeriodicRun(
        { everyMs: p.every_ms, cron: p.cron, timezone: p.timezone },
        p.next_run_at,
        now,
      );
      this.sql.advance.run(next, now, this.queue, p.name);
    }
    return due.map((p) => p.type);
  }
}

interface PeriodicRow {
  queue: string;
  name: string;
  type: string;
  payload: string;
  every_ms: number | null;
  cron: string | null;
  timezone: string | null;
  priority: number;
  max_attempts: number | null;
  next_run_at: number;
  last_run_at: number | null;
  paused_at: number | null;
}

function toPeriodic(p: PeriodicRow): PeriodicJob {
  return {
    name: p.name,
    type: p.type,
    payload: JSON.parse(p.payload),
    everyMs: p.every_ms,
    cron: p.cron,
    nextRunAt: p.next_run_at,
    lastRunAt: p.last_run_at,
    paused: p.paused_at !== null,
    pausedAt: p.paused_at,
  };
}

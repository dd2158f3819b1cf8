/**
 * Leases: the worker-facing half of the Queue — claim, settle, renew, release
 * and reap — over the same `tw_jobs` table. It is the Queue's WorkerSource
 * (source.ts): Worker calls it directly, and the Queue's public type lacks it.
 *
 * Contract: a claim takes due jobs in (priority DESC, run_at, id) order and
 * leases them to one owner until `now + leaseMs`. Every later write about a
 * claimed job (an outcome, a release) matches `state = 'running' AND
 * lease_owner = ? AND attempts = ?`, so it lands only while that very lease
 * holds; an owner that lost its lease changes nothing and learns so (the
 * outcome comes back as stale). A lease that expired returns the job to
 * pending as a spent attempt, or to failed when none is left.
 */
import type Database from "better-sqlite3";
import { exponentialDelay } from "../backoff.js";
import type { Store } from "../store.js";
import { resolveBackoff } from "./backoff.js";
import type { JobRow } from "./rows.js";
import type { AddedSignal, Settlement, SettleResult, WorkerSource } from "./source.js";
import type { BackoffOptions, Job } from "./types.js";

/**
 * What a claim reads back: only the columns the claim did not just set. Returning
 * every column (RETURNING *) made the claim ~1.5x slower, all of it spent building values.
 */
const CLAIMED_COLUMNS =
  "id, type, payload, priority, run_at, attempts, max_attempts, backoff, key, last_error, timeout_ms, created_at, trace";
type ClaimedRow = Pick<
  JobRow,
  | "id"
  | "type"
  | "payload"
  | "priority"
  | "run_at"
  | "attempts"
  | "max_attempts"
  | "backoff"
  | "key"
  | "last_error"
  | "timeout_ms"
  | "created_at"
  | "trace"
>;

export class Leases implements WorkerSource {
  private readonly sql;
  private readonly claimTx: (
    owner: string,
    limit: number,
    leaseMs: number,
    types: string | null,
  ) => { rows: ClaimedRow[]; now: number };
  private readonly settleTx: (owner: string, settlements: Settlement[], result: SettleResult) => void;

  constructor(
    private readonly store: Store,
    private readonly name: string,
    private readonly backoff: Required<BackoffOptions>,
    private readonly clock: () => number,
    private readonly added: AddedSignal,
  ) {
    const db: Database.Database = store.db;
    this.sql = {
      claim: db.prepare<[string, number, number, string, number, number]>(
        `UPDATE tw_jobs
            SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, started_at = ?
          WHERE id IN (SELECT id FROM tw_jobs
                        WHERE queue = ? AND state = 'pending' AND run_at <= ?
                        ORDER BY priority DESC, run_at, id LIMIT ?)
            AND state = 'pending'
        RETURNING ${CLAIMED_COLUMNS}`,
      ),
      // The same claim for a worker that takes only the types it has handlers for. The index
      // still yields claim order; rows of other types are read and skipped.
      claimTypes: db.prepare<[string, number, number, string, number, string, number]>(
        `UPDATE tw_jobs
            SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, started_at = ?
          WHERE id IN (SELECT id FROM tw_jobs
                        WHERE queue = ? AND state = 'pending' AND run_at <= ?
                          AND type IN (SELECT value FROM json_each(?))
                        ORDER BY priority DESC, run_at, id LIMIT ?)
            AND state = 'pending'
        RETURNING ${CLAIMED_COLUMNS}`,
      ),
      // One statement completes a whole batch; a pair whose lease was lost matches nothing.
      completeMany: db.prepare<{ now: number; owner: string; held: string }>(
        `UPDATE tw_jobs SET state = 'completed', finished_at = @now, lease_owner = NULL, lease_expires_at = NULL
           FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempts FROM json_each(@held)) AS held
          WHERE tw_jobs.id = held.id AND tw_jobs.attempts = held.attempts
            AND tw_jobs.state = 'running' AND tw_jobs.lease_owner = @owner
        RETURNING tw_jobs.id, tw_jobs.attempts`,
      ),
      retryLater: db.prepare<[number, string, number, string, number]>(
        `UPDATE tw_jobs SET state = 'pending', run_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL
          WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?`,
      ),
      failFinal: db.prepare<[number, string, number, string, number]>(
        `UPDATE tw_jobs SET state = 'failed', finished_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL
          WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?`,
      ),
      release: db.prepare<[number, string, number]>(
        `UPDATE tw_jobs SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
                started_at = NULL
          WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?`,
      ),
      extend: db
        .prepare<[number, string, string], number>(
          `UPDATE tw_jobs SET lease_expires_at = ? WHERE lease_owner = ? AND state = 'running' AND queue = ?
           RETURNING id`,
        )
        .pluck(),
      reap: db.prepare<{ now: number; queue: string }>(
        `UPDATE tw_jobs
            SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
                finished_at = CASE WHEN attempts >= max_attempts THEN @now END,
                run_at = @now,
                last_error = 'lease expired: worker ' || coalesce(lease_owner, '?') || ' stopped renewing it',
                lease_owner = NULL, lease_expires_at = NULL
          WHERE state = 'running' AND lease_expires_at < @now AND queue = @queue`,
      ),
    };
    this.claimTx = store.writer((owner: string, limit: number, leaseMs: number, types: string | null) => {
      const now = this.now();
      const rows = (
        types === null
          ? this.sql.claim.all(owner, now + leaseMs, now, this.name, now, limit)
          : this.sql.claimTypes.all(owner, now + leaseMs, now, this.name, now, types, limit)
      ) as ClaimedRow[];
      return { rows, now };
    }, "queue.claim");
    this.settleTx = store.writer(
      (owner: string, settlements: Settlement[], result: SettleResult) =>
        this.writeSettlements(owner, settlements, result),
      "queue.settle",
    );
  }

  now(): number {
    return this.clock();
  }

  onAdded(listener: () => void): () => void {
    return this.added.on(listener);
  }

  claim(owner: string, limit: number, leaseMs: number, types?: readonly string[]): Job[] {
    const { rows, now } = this.claimTx(owner, limit, leaseMs, types ? JSON.stringify(types) : null);
    // RETURNING gives no order; hand jobs out in claim order.
    rows.sort((a, b) => b.priority - a.priority || a.run_at - b.run_at || a.id - b.id);
    return rows.map((r) => ({
      id: r.id,
      queue: this.name,
      type: r.type,
      payload: JSON.parse(r.payload),
      state: "running",
      priority: r.priority,
      runAt: r.run_at,
      attempts: r.attempts,
      maxAttempts: r.max_attempts,
      backoff: r.backoff === null ? null : JSON.parse(r.backoff),
      key: r.key,
      leaseOwner: owner,
      leaseExpiresAt: now + leaseMs,
      lastError: r.last_error,
      timeoutMs: r.timeout_ms,
      createdAt: r.created_at,
      startedAt: now,
      finishedAt: null,
      trace: r.trace,
    }));
  }

  settle(owner: string, settlements: Settlement[]): SettleResult {
    const result: SettleResult = { applied: [], stale: [] };
    if (settlements.length === 0) return result;
    this.settleTx(owner, settlements, result);
    return result;
  }

  private writeSettlements(owner: string, settlements: Settlement[], result: SettleResult): void {
    const now = this.now();
    result.applied.length = 0;
    result.stale.length = 0;
    const completions = settlements.filter((s) => s.ok);
    if (completions.length > 0) {
      const held = JSON.stringify(completions.map((s) => [s.job.id, s.job.attempts]));
      // Job id -> the attempt that completed: one batch may hold a stale and a current attempt of a job.
      const done = new Map(
        (this.sql.completeMany.all({ now, owner, held }) as Array<{ id: number; attempts: number }>).map(
          (r) => [r.id, r.attempts],
        ),
      );
      for (const s of completions) {
        if (done.get(s.job.id) === s.job.attempts) result.applied.push({ ...s, final: true });
        else result.stale.push(s);
      }
    }
    for (const s of settlements) {
      if (s.ok) continue;
      const { job } = s;
      let final = true;
      let changes: number;
      if (s.retry && job.attempts < job.maxAttempts) {
        final = false;
        const backoff = job.backoff ? resolveBackoff(this.backoff, job.backoff) : this.backoff;
        changes = this.sql.retryLater.run(
          now + exponentialDelay(job.attempts - 1, backoff),
          s.error,
          job.id,
          owner,
          job.attempts,
        ).changes;
      } else {
        changes = this.sql.failFinal.run(now, s.error, job.id, owner, job.attempts).changes;
      }
      if (changes > 0) result.applied.push({ ...s, final });
      else result.stale.push(s);
    }
  }

  extendLeases(owner: string, leaseMs: number): number[] {
    return this.store.write(() => this.sql.extend.all(this.now() + leaseMs, owner, this.name), "queue.lease");
  }

  /** Returns claimed but unstarted jobs to pending without spending an attempt. */
  release(owner: string, jobs: Job[]): number {
    if (jobs.length === 0) return 0;
    const n = this.store.write(() => {
      let changed = 0;
      for (const job of jobs) changed += this.sql.release.run(job.id, owner, job.attempts).changes;
      return changed;
    }, "queue.lease");
    if (n > 0) this.added.emit();
    return n;
  }

  reapExpired(): number {
    const n = this.store.write(
      () => this.sql.reap.run({ now: this.now(), queue: this.name }).changes,
      "queue.lease",
    );
    if (n > 0) this.added.emit();
    return n;
  }
}

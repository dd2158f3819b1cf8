/**
 * Queue: a durable job queue in the Store's SQLite file.
 *
 * Contract: a job is claimed by one owner at a time; the claim takes a lease
 * that the owner extends while it works, and a job whose lease expired goes
 * back to pending as a spent attempt, so a crashed process's jobs are taken by
 * whoever claims next. Claims, completions and failures are batched: each batch
 * is one IMMEDIATE transaction. A settlement only lands while its lease holds
 * (same owner, same attempt), so a worker that lost a lease cannot overwrite
 * the job's newer state. Many processes may share one file.
 *
 * The class is the user's API; its parts each own one idea over `tw_jobs`:
 * Inserts (new jobs), Leases (the worker's side, reached through
 * source.ts, not through this type), Schedules (periodic jobs), QueueAdmin
 * (the operator's console), and states.ts (which moves a job may make).
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { jobsAdded } from "../metrics.js";
import type { Store } from "../store.js";
import { checkName } from "../validate.js";
import { QueueAdmin } from "./admin.js";
import { resolveBackoff, validateBackoff } from "./backoff.js";
import { Inserts } from "./inserts.js";
import { Leases } from "./leases.js";
import { cronSpec, everySpec, type PeriodicSpec } from "./periodic.js";
import { type JobRow, toJob } from "./rows.js";
import { Schedules } from "./schedules.js";
import { AddedSignal, provideSource } from "./source.js";
import { checkMove, refuseMove } from "./states.js";
import {
  type AddManyItem,
  type AddOptions,
  type BackoffOptions,
  type BulkOptions,
  type CleanupOptions,
  type Job,
  type JobAction,
  type JobFilter,
  type JobPage,
  type JobQueue,
  type JobState,
  type JobUpdate,
  type ListOptions,
  type PeriodicJob,
  type PeriodicOptions,
  type QueueStats,
  type SearchOptions,
  type SortBy,
  type StuckOptions,
  zeroPerState,
} from "./types.js";
import {
  checkId,
  normalizeAdd,
  normalizeBulk,
  normalizeCleanup,
  normalizeList,
  normalizeStuck,
} from "./validate.js";

export interface QueueOptions {
  /** Default retry backoff for this queue's jobs (a job's own backoff wins). */
  backoff?: BackoffOptions;
  /** Clock in epoch ms; tests replace it to expire leases at will. */
  clock?: () => number;
}

/** A job may become pending again only while no other unfinished job holds its dedup key. */
const KEY_FREE = `(key IS NULL OR NOT EXISTS (
  SELECT 1 FROM tw_jobs AS other
   WHERE other.queue = tw_jobs.queue AND other.key = tw_jobs.key
     AND other.state IN ('pending', 'running') AND other.id <> tw_jobs.id))`;
const CANCELLABLE = JSON.stringify(["pending", "running"]);
const ORDER_COLUMN: Record<SortBy, string> = { created: "id", priority: "priority", runAt: "run_at" };

export class Queue implements JobQueue {
  readonly name: string;
  private readonly db: Database.Database;
  private readonly backoff: Required<BackoffOptions>;
  private readonly clock: () => number;
  private readonly added = new AddedSignal();
  private readonly sql;
  private readonly listSql = new Map<string, Database.Statement>();
  private readonly leases: Leases;
  private readonly inserts: Inserts;
  private readonly schedules: Schedules;
  private readonly admin: QueueAdmin;
  /** jobsAdded's child per job type: prom-client's labels() builds a new one each call. */
  private readonly addedCounters = new Map<string, { inc(n?: number): void }>();

  constructor(
    readonly store: Store,
    name = "default",
    options: QueueOptions = {},
  ) {
    this.name = checkName("name", name);
    validateBackoff("backoff", options.backoff);
    this.backoff = resolveBackoff(options.backoff);
    this.clock = options.clock ?? Date.now;
    this.db = store.db;
    const db = this.db;
    this.sql = {
      get: db.prepare<[number, string]>(`SELECT * FROM tw_jobs WHERE id = ? AND queue = ?`),
      // @from: the states the move is legal from (states.ts), as a JSON array.
      move: db.prepare<{ to: JobState; now: number; id: number; queue: string; from: string }>(
        `UPDATE tw_jobs
            SET state = @to,
                run_at = CASE WHEN @to = 'pending' THEN max(run_at, @now) ELSE run_at END,
                finished_at = CASE WHEN @to IN ('completed', 'failed', 'cancelled') THEN @now END,
                lease_owner = NULL, lease_expires_at = NULL
          WHERE id = @id AND queue = @queue
            AND state IN (SELECT value FROM json_each(@from))
            AND (@to <> 'pending' OR ${KEY_FREE})`,
      ),
      stateOf: db
        .prepare<[number, string], JobState>(`SELECT state FROM tw_jobs WHERE id = ? AND queue = ?`)
        .pluck(),
      retry: db.prepare<{ now: number; id: number; queue: string }>(
        `UPDATE tw_jobs SET state = 'pending', attempts = 0, run_at = @now, finished_at = NULL,
                lease_owner = NULL, lease_expires_at = NULL
          WHERE id = @id AND queue = @queue AND state IN ('failed', 'cancelled') AND ${KEY_FREE}`,
      ),
      stats: db.prepare<[string]>(
        `SELECT state, count(*) AS n, sum(attempts) AS attempts FROM tw_jobs WHERE queue = ? GROUP BY state`,
      ),
      oldestPending: db.prepare<[string, number]>(
        `SELECT min(run_at) AS t FROM tw_jobs WHERE queue = ? AND state = 'pending' AND run_at <= ?`,
      ),
      stuck: db.prepare<{ queue: string; now: number; startedBefore: number; pendingBefore: number }>(
        `SELECT * FROM tw_jobs WHERE queue = @queue AND state = 'running'
            AND (lease_expires_at < @now OR started_at < @startedBefore)
         UNION ALL
         SELECT * FROM tw_jobs WHERE queue = @queue AND state = 'pending' AND run_at < @pendingBefore
         ORDER BY id`,
      ),
      cleanup: db.prepare<[string, string, number]>(
        `DELETE FROM tw_jobs
          WHERE queue = ? AND state IN ('completed', 'failed', 'cancelled')
            AND state IN (SELECT value FROM json_each(?)) AND finished_at < ?`,
      ),
    };
    this.inserts = new Inserts(store, this.name);
    this.leases = new Leases(store, this.name, this.backoff, () => this.now(), this.added);
    provideSource(this, this.leases);
    this.schedules = new Schedules(db, this.name);
    this.admin = new QueueAdmin(store, this.name, (action, id, priority) =>
      this.applyOne(action, id, priority),
    );
  }

  now(): number {
    return this.clock();
  }

  add<P>(type: string, payload?: P, options?: AddOptions): Job<P> {
    const now = this.now();
    const row = normalizeAdd(type, payload, options, now);
    const job = this.inserts.one(row, now);
    this.countAdded(row.type, 1);
    this.added.emit();
    return job as Job<P>;
  }

  /**
   * All items or none: every item is validated before anything is written, and
   * the rows go in one transaction. Keyless rows are inserted 100 per statement.
   */
  addMany(items: AddManyItem[]): Job[] {
    if (!Array.isArray(items)) throw new InvalidArgumentError("items", "must be an array");
    const now = this.now();
    const rows = items.map((item, i) => {
      if (item === null || typeof item !== "object")
        throw new InvalidArgumentError(`items[${i}]`, "must be an object");
      return normalizeAdd(item.type, item.payload, item.options, now, `items[${i}].`);
    });
    if (rows.length === 0) return [];
    const jobs = this.inserts.batch(rows, now);
    const counts = new Map<string, number>();
    for (const row of rows) counts.set(row.type, (counts.get(row.type) ?? 0) + 1);
    for (const [type, n] of counts) this.countAdded(type, n);
    this.added.emit();
    return jobs;
  }

  private countAdded(type: string, n: number): void {
    let counter = this.addedCounters.get(type);
    if (counter === undefined) {
      counter = jobsAdded.labels(type);
      this.addedCounters.set(type, counter);
    }
    counter.inc(n);
  }

  get(id: number): Job | undefined {
    const row = this.sql.get.get(checkId(id), this.name) as JobRow | undefined;
    return row && toJob(row);
  }

  list(options?: ListOptions): Job[] {
    const o = normalizeList(options);
    const variant = `${o.sortBy}:${o.order}`;
    let stmt = this.listSql.get(variant);
    if (!stmt) {
      // Six fixed variants, each prepared once; ORDER BY cannot be a parameter.
      const col = ORDER_COLUMN[o.sortBy];
      const dir = o.order === "desc" ? "DESC" : "ASC";
      stmt = this.db.prepare(
        `SELECT * FROM tw_jobs
          WHERE queue = @queue AND (@state IS NULL OR state = @state) AND (@type IS NULL OR type = @type)
          ORDER BY ${col} ${dir}, id ${dir} LIMIT @limit OFFSET @offset`,
      );
      this.listSql.set(variant, stmt);
    }
    const rows = stmt.all({
      queue: this.name,
      state: o.state,
      type: o.type,
      limit: o.limit,
      offset: o.offset,
    });
    return (rows as JobRow[]).map(toJob);
  }

  /**
   * Moves a job along the state machine (states.ts): false when it is missing, already
   * in `to`, not in `from`, or its key is held; IllegalTransitionError for a move its state forbids.
   */
  moveToState(id: number, to: JobState, options: { from?: JobState | JobState[] } = {}): boolean {
    checkId(id);
    const move = checkMove(to, options.from);
    const from = JSON.stringify(move.from);
    const moved = this.store.write(() => {
      if (this.sql.move.run({ to: move.to, now: this.now(), id, queue: this.name, from }).changes > 0)
        return true;
      // Only a move that did not happen reads the state, to tell a refusal from a miss.
      return refuseMove(id, this.sql.stateOf.get(id, this.name), move);
    }, "queue.admin");
    if (moved && to === "pending") this.added.emit();
    return moved;
  }

  /** A failed or cancelled job runs again with a fresh set of attempts. */
  retry(id: number): boolean {
    checkId(id);
    const changed = this.store.write(
      () => this.sql.retry.run({ now: this.now(), id, queue: this.name }).changes,
      "queue.admin",
    );
    if (changed > 0) this.added.emit();
    return changed > 0;
  }

  cancel(id: number): boolean {
    return this.moveToState(id, "cancelled", { from: ["pending", "running"] });
  }

  stats(): QueueStats {
    const now = this.now();
    const out = zeroPerState();
    const perState = zeroPerState();
    let total = 0;
    let attempts = 0;
    for (const r of this.sql.stats.all(this.name) as Array<{
      state: JobState;
      n: number;
      attempts: number;
    }>) {
      out[r.state] = r.n;
      perState[r.state] = r.attempts;
      total += r.n;
      attempts += r.attempts;
    }
    const oldest = (this.sql.oldestPending.get(this.name, now) as { t: number | null }).t;
    return {
      ...out,
      total,
      averageAttempts: total === 0 ? 0 : attempts / total,
      oldestPendingAgeMs: oldest === null ? 0 : Math.max(0, now - oldest),
      attempts: perState,
    };
  }

  /**
   * Running jobs whose lease has expired or that started more than `olderThanMs` ago (a
   * renewed lease does not hide a handler that never ends), and due jobs that have waited
   * longer than `pendingForMs`.
   */
  stuck(options?: StuckOptions): Job[] {
    const { olderThanMs, pendingForMs } = normalizeStuck(options);
    const now = this.now();
    const rows = this.sql.stuck.all({
      queue: this.name,
      now,
      startedBefore: now - olderThanMs,
      pendingBefore: now - pendingForMs,
    }) as JobRow[];
    return rows.map(toJob);
  }

  cleanup(options?: CleanupOptions): number {
    const { olderThanMs, states } = normalizeCleanup(options);
    return this.store.write(
      () => this.sql.cleanup.run(this.name, JSON.stringify(states), this.now() - olderThanMs).changes,
      "queue.admin",
    );
  }

  every(name: string, everyMs: number, type: string, payload?: unknown, options: PeriodicOptions = {}): void {
    this.upsertPeriodic(everySpec(name, everyMs, type, payload, options, this.now()));
  }

  cron(
    name: string,
    expression: string,
    type: string,
    payload?: unknown,
    options: PeriodicOptions = {},
  ): void {
    this.upsertPeriodic(cronSpec(name, expression, type, payload, options, this.now()));
  }

  private upsertPeriodic(spec: PeriodicSpec): void {
    this.store.write(() => this.schedules.upsert(spec, this.now()), "queue.schedule");
  }

  removePeriodic(name: string): boolean {
    checkName("name", name);
    return this.store.write(() => this.schedules.remove(name), "queue.schedule");
  }

  listPeriodic(): PeriodicJob[] {
    return this.schedules.list();
  }

  pausePeriodic(name: string): boolean {
    checkName("name", name);
    return this.store.write(() => this.schedules.pause(name, this.now()));
  }

  resumePeriodic(name: string): boolean {
    checkName("name", name);
    return this.store.write(() => this.schedules.resume(name, this.now()));
  }

  firePeriodic(): number {
    const types = this.store.write(() => {
      const now = this.now();
      return this.schedules.fireDue(now, (job) => this.inserts.insert(job, now));
    }, "queue.schedule");
    for (const type of types) this.countAdded(type, 1);
    if (types.length > 0) this.added.emit();
    return types.length;
  }

  // The operator's console: search, re-prioritise, re-schedule, delete, bulk actions (admin.ts).

  /** A page of the jobs matching `options` (state, type, text `q`), and how many match in all. */
  search(options?: SearchOptions): JobPage {
    return this.admin.search(options);
  }

  count(filter?: JobFilter): number {
    return this.admin.count(filter);
  }

  /** A pending job's new priority and/or due time; false if the job is not pending. */
  update(id: number, patch: JobUpdate): boolean {
    checkId(id);
    const changed = this.store.write(() => this.admin.updateRow(id, patch), "queue.admin");
    if (changed && patch.runAt !== undefined) this.added.emit();
    return changed;
  }

  /** Deletes a job that is not running; false if there is none or it runs. */
  remove(id: number): boolean {
    checkId(id);
    return this.store.write(() => this.admin.removeRow(id), "queue.admin");
  }

  /** Applies `action` to every job `filter` matches, in one transaction; returns how many changed. */
  bulk(action: JobAction, filter?: JobFilter, options?: BulkOptions): number {
    const n = this.admin.bulk(action, filter, options);
    if (n > 0 && (action === "retry" || action === "run")) this.added.emit();
    return n;
  }

  /** One action on one job (see JOB_ACTIONS); false if the job's state does not allow it. */
  act(action: JobAction, id: number, options?: { priority?: number }): boolean {
    checkId(id);
    const o = normalizeBulk(action, options);
    const changed = this.store.write(() => this.applyOne(o.action, id, o.priority), "queue.admin");
    if (changed && (action === "retry" || action === "run")) this.added.emit();
    return changed;
  }

  /** One job, inside the bulk's transaction, with the single-job statements' rules. */
  private applyOne(action: JobAction, id: number, priority: number | null): boolean {
    const now = this.now();
    const queue = this.name;
    switch (action) {
      case "retry":
        return this.sql.retry.run({ now, id, queue }).changes > 0;
      case "cancel":
        return this.sql.move.run({ to: "cancelled", now, id, queue, from: CANCELLABLE }).changes > 0;
      case "run":
        return this.admin.promoteRow(id, now);
      case "priority":
        return this.admin.updateRow(id, { priority: priority ?? 0 });
      case "delete":
        return this.admin.removeRow(id);
    }
  }
}

/**
 * MemoryQueue: the Queue's interface and semantics with nothing persisted, for
 * tests and for work that may be lost with the process. Leases, retries,
 * backoff, dedup keys and periodic jobs behave as in the SQLite Queue.
 */
import { InvalidArgumentError } from "../errors.js";
import { jobsAdded } from "../metrics.js";
import { checkName } from "../validate.js";
import { CountChangedError } from "./admin.js";
import { resolveBackoff, validateBackoff } from "./backoff.js";
import { matchesFilter } from "./filter.js";
import { copyJob, MemoryLeases } from "./memory-leases.js";
import { MemorySchedules } from "./memory-schedules.js";
import { cronSpec, everySpec, type PeriodicSpec } from "./periodic.js";
import { AddedSignal, provideSource } from "./source.js";
import { checkMove, refuseMove } from "./states.js";
import {
  type AddManyItem,
  type AddOptions,
  type BackoffOptions,
  type BulkOptions,
  type CleanupOptions,
  FINISHED_STATES,
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
  type StuckOptions,
  zeroPerState,
} from "./types.js";
import {
  checkId,
  type NormalizedAdd,
  normalizeAdd,
  normalizeBulk,
  normalizeCleanup,
  normalizeFilter,
  normalizeList,
  normalizeStuck,
  normalizeUpdate,
  pendingJob,
} from "./validate.js";

export class MemoryQueue implements JobQueue {
  readonly name: string;
  private readonly jobs = new Map<number, Job>();
  private readonly schedules = new MemorySchedules();
  private readonly backoff: Required<BackoffOptions>;
  private readonly clock: () => number;
  private readonly added = new AddedSignal();
  private nextId = 1;

  constructor(name = "default", options: { backoff?: BackoffOptions; clock?: () => number } = {}) {
    this.name = checkName("name", name);
    validateBackoff("backoff", options.backoff);
    this.backoff = resolveBackoff(options.backoff);
    this.clock = options.clock ?? Date.now;
    provideSource(this, new MemoryLeases(this.jobs, this.backoff, this.clock, this.added));
  }

  now(): number {
    return this.clock();
  }

  add<P>(type: string, payload?: P, options?: AddOptions): Job<P> {
    const job = this.insert(normalizeAdd(type, payload, options, this.now()));
    this.added.emit();
    return copyJob(job) as Job<P>;
  }

  addMany(items: AddManyItem[]): Job[] {
    if (!Array.isArray(items)) throw new InvalidArgumentError("items", "must be an array");
    const now = this.now();
    const rows = items.map((item, i) => {
      if (item === null || typeof item !== "object")
        throw new InvalidArgumentError(`items[${i}]`, "must be an object");
      return normalizeAdd(item.type, item.payload, item.options, now, `items[${i}].`);
    });
    const jobs = rows.map((r) => copyJob(this.insert(r)));
    if (jobs.length > 0) this.added.emit();
    return jobs;
  }

  private insert(r: NormalizedAdd): Job {
    if (r.key !== null) {
      for (const j of this.jobs.values()) {
        if (j.key === r.key && (j.state === "pending" || j.state === "running")) return j;
      }
    }
    const now = this.now();
    const job = pendingJob(this.nextId++, this.name, r, now, JSON.parse(r.payload));

    this.jobs.set(job.id, job);
    jobsAdded.labels(job.type).inc();
    return job;
  }

  get(id: number): Job | undefined {
    const job = this.jobs.get(checkId(id));
    return job && copyJob(job);
  }

  list(options?: ListOptions): Job[] {
    const o = normalizeList(options);
    const key = o.sortBy === "created" ? "id" : o.sortBy;
    const dir = o.order === "desc" ? -1 : 1;
    return [...this.jobs.values()]
      .filter((j) => (o.state === null || j.state === o.state) && (o.type === null || j.type === o.type))
      .sort((a, b) => dir * (a[key] - b[key] || a.id - b.id))
      .slice(o.offset, o.offset + o.limit)
      .map(copyJob);
  }

  moveToState(id: number, to: JobState, options: { from?: JobState | JobState[] } = {}): boolean {
    checkId(id);
    const move = checkMove(to, options.from);
    const job = this.jobs.get(id);
    if (!job || !move.from.includes(job.state)) return refuseMove(id, job?.state, move);
    if (to === "pending" && this.keyTaken(job)) return false;
    const now = this.now();
    job.state = to;
    if (to === "pending") job.runAt = Math.max(job.runAt, now);
    job.finishedAt = FINISHED_STATES.includes(to) ? now : null;
    job.leaseOwner = null;
    job.leaseExpiresAt = null;
    if (to === "pending") this.added.emit();
    return true;
  }

  retry(id: number): boolean {
    const job = this.jobs.get(checkId(id));
    if (!job || (job.state !== "failed" && job.state !== "cancelled") || this.keyTaken(job)) return false;
    Object.assign(job, { state: "pending", attempts: 0, runAt: this.now(), finishedAt: null });
    this.added.emit();
    return true;
  }

  cancel(id: number): boolean {
    return this.moveToState(id, "cancelled", { from: ["pending", "running"] });
  }

  /** Another unfinished job holds this job's dedup key. */
  private keyTaken(job: Job): boolean {
    if (job.key === null) return false;
    for (const j of this.jobs.values()) {
      if (j !== job && j.key === job.key && (j.state === "pending" || j.state === "running")) return true;
    }
    return false;
  }

  stats(): QueueStats {
    const now = this.now();
    const counts = zeroPerState();
    const perState = zeroPerState();
    let attempts = 0;
    let oldest: number | null = null;
    for (const j of this.jobs.values()) {
      counts[j.state]++;
      perState[j.state] += j.attempts;
      attempts += j.attempts;
      if (j.state === "pending" && j.runAt <= now && (oldest === null || j.runAt < oldest)) oldest = j.runAt;
    }
    const total = this.jobs.size;
    return {
      ...counts,
      total,
      averageAttempts: total === 0 ? 0 : attempts / total,
      oldestPendingAgeMs: oldest === null ? 0 : now - oldest,
      attempts: perState,
    };
  }

  stuck(options?: StuckOptions): Job[] {
    const { olderThanMs, pendingForMs } = normalizeStuck(options);
    const now = this.now();
    return [...this.jobs.values()]
      .filter(
        (j) =>
          (j.state === "running" &&
            ((j.leaseExpiresAt ?? 0) < now || (j.startedAt ?? now) < now - olderThanMs)) ||
          (j.state === "pending" && j.runAt < now - pendingForMs),
      )
      .map(copyJob);
  }

  cleanup(options?: CleanupOptions): number {
    const { olderThanMs, states } = normalizeCleanup(options);
    const cutoff = this.now() - olderThanMs;
    let n = 0;
    for (const [id, j] of this.jobs) {
      if (states.includes(j.state) && j.finishedAt !== null && j.finishedAt < cutoff) {
        this.jobs.delete(id);
        n++;
      }
    }
    return n;
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
    this.schedules.upsert(spec);
  }

  removePeriodic(name: string): boolean {
    return this.schedules.remove(checkName("name", name));
  }

  listPeriodic(): PeriodicJob[] {
    return this.schedules.list();
  }

  pausePeriodic(name: string): boolean {
    return this.schedules.pause(checkName("name", name), this.now());
  }

  resumePeriodic(name: string): boolean {
    return this.schedules.resume(checkName("name", name), this.now());
  }

  firePeriodic(): number {
    const fired = this.schedules.fireDue(this.now(), (job) => this.insert(job));
    if (fired > 0) this.added.emit();
    return fired;
  }

  // The operator's console, with the Queue's rules (admin.ts).

  search(options?: SearchOptions): JobPage {
    const o = normalizeList(options);
    const key = o.sortBy === "created" ? "id" : o.sortBy;
    const dir = o.order === "desc" ? -1 : 1;
    const all = this.matching(options).sort((a, b) => dir * (a[key] - b[key] || a.id - b.id));
    return { jobs: all.slice(o.offset, o.offset + o.limit).map(copyJob), total: all.length };
  }

  count(filter?: JobFilter): number {
    return this.matching(filter).length;
  }

  update(id: number, patch: JobUpdate): boolean {
    const job = this.jobs.get(checkId(id));
    const { priority, runAt } = normalizeUpdate(patch);
    if (job?.state !== "pending") return false;
    if (priority !== null) job.priority = priority;
    if (runAt !== null) {
      job.runAt = runAt;
      this.added.emit();
    }
    return true;
  }

  remove(id: number): boolean {
    const job = this.jobs.get(checkId(id));
    if (!job || job.state === "running") return false;
    return this.jobs.delete(id);
  }

  act(action: JobAction, id: number, options?: { priority?: number }): boolean {
    checkId(id);
    const o = normalizeBulk(action, options);
    return this.applyOne(o.action, id, o.priority);
  }

  bulk(action: JobAction, filter?: JobFilter, options?: BulkOptions): number {
    const matched = this.matching(filter).sort((a, b) => a.id - b.id);
    const o = normalizeBulk(action, options);
    if (o.expect !== null && matched.length !== o.expect)
      throw new CountChangedError(o.expect, matched.length);
    let changed = 0;
    for (const job of matched) if (this.applyOne(o.action, job.id, o.priority)) changed++;
    return changed;
  }

  private matching(filter: JobFilter | undefined): Job[] {
    const f = normalizeFilter(filter);
    return [...this.jobs.values()].filter((j) => matchesFilter(j, f));
  }

  private applyOne(action: JobAction, id: number, priority: number | null): boolean {
    switch (action) {
      case "retry":
        return this.retry(id);
      case "cancel":
        return this.cancel(id);
      case "run": {
        const job = this.jobs.get(id);
        const now = this.now();
        return job?.state === "pending" && job.runAt > now && this.update(id, { runAt: now });
      }
      case "priority":
        return this.update(id, { priority: priority ?? 0 });
      case "delete":
        return this.remove(id);
    }
  }
}

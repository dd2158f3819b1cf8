/**
 * MemoryQueue: the Queue's interface and semantics with nothing persisted, for
 * tests and for work that may be lost with the process. Leases, retries,
 * backoff, dedup keys and periodic jobs behave as in the SQLite Queue.
 */
import { EventEmitter } from "node:events";
import { exponentialDelay } from "../backoff.js";
import { InvalidArgumentError } from "../errors.js";
import { jobsAdded } from "../metrics.js";
import { checkName } from "../validate.js";
import { CountChangedError } from "./admin.js";
import { resolveBackoff, validateBackoff } from "./backoff.js";
import { matchesFilter } from "./filter.js";
import { cronSpec, everySpec, nextPeriodicRun, type PeriodicSpec, periodicJob } from "./periodic.js";
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
  type Settlement,
  type SettleResult,
  type StuckOptions,
  zeroPerState,
} from "./types.js";
import {
  checkFrom,
  checkId,
  checkState,
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

/** A stored schedule: its spec (payload as JSON text) plus when it fires next and fired last. */
interface Periodic extends PeriodicSpec {
  lastRunAt: number | null;
  pausedAt: number | null;
}

const byClaimOrder = (a: Job, b: Job) => b.priority - a.priority || a.runAt - b.runAt || a.id - b.id;

export class MemoryQueue implements JobQueue {
  readonly name: string;
  private readonly jobs = new Map<number, Job>();
  private readonly periodic = new Map<string, Periodic>();
  private readonly backoff: Required<BackoffOptions>;
  private readonly clock: () => number;
  private readonly events = new EventEmitter();
  private nextId = 1;

  constructor(name = "default", options: { backoff?: BackoffOptions; clock?: () => number } = {}) {
    this.name = checkName("name", name);
    validateBackoff("backoff", options.backoff);
    this.backoff = resolveBackoff(options.backoff);
    this.clock = options.clock ?? Date.now;
    this.events.setMaxListeners(0);
  }

  now(): number {
    return this.clock();
  }

  add<P>(type: string, payload?: P, options?: AddOptions): Job<P> {
    const job = this.insert(normalizeAdd(type, payload, options, this.now()));
    this.events.emit("added");
    return copy(job) as Job<P>;
  }

  addMany(items: AddManyItem[]): Job[] {
    if (!Array.isArray(items)) throw new InvalidArgumentError("items", "must be an array");
    const now = this.now();
    const rows = items.map((item, i) => {
      if (item === null || typeof item !== "object")
        throw new InvalidArgumentError(`items[${i}]`, "must be an object");
      return normalizeAdd(item.type, item.payload, item.options, now, `items[${i}].`);
    });
    const jobs = rows.map((r) => copy(this.insert(r)));
    if (jobs.length > 0) this.events.emit("added");
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
    return job && copy(job);
  }

  list(options?: ListOptions): Job[] {
    const o = normalizeList(options);
    const key = o.sortBy === "created" ? "id" : o.sortBy;
    const dir = o.order === "desc" ? -1 : 1;
    return [...this.jobs.values()]
      .filter((j) => (o.state === null || j.state === o.state) && (o.type === null || j.type === o.type))
      .sort((a, b) => dir * (a[key] - b[key] || a.id - b.id))
      .slice(o.offset, o.offset + o.limit)
      .map(copy);
  }

  moveToState(id: number, to: JobState, options: { from?: JobState | JobState[] } = {}): boolean {
    checkId(id);
    checkState("to", to);
    if (to === "running") throw new InvalidArgumentError("to", "a job enters running only through a claim");
    const from = checkFrom(options.from);
    const job = this.jobs.get(id);
    if (!job || job.state === to || (from && !from.includes(job.state))) return false;
    if (to === "pending" && this.keyTaken(job)) return false;
    const now = this.now();
    job.state = to;
    if (to === "pending") job.runAt = Math.max(job.runAt, now);
    job.finishedAt = FINISHED_STATES.includes(to) ? now : null;
    job.leaseOwner = null;
    job.leaseExpiresAt = null;
    if (to === "pending") this.events.emit("added");
    return true;
  }

  retry(id: number): boolean {
    const job = this.jobs.get(checkId(id));
    if (!job || (job.state !== "failed" && job.state !== "cancelled") || this.keyTaken(job)) return false;
    Object.assign(job, { state: "pending", attempts: 0, runAt: this.now(), finishedAt: null });
    this.events.emit("added");
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
      .map(copy);
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
    const old = this.periodic.get(spec.name);
    const sameSchedule = old && old.everyMs === spec.everyMs && old.cron === spec.cron;
    this.periodic.set(spec.name, {
      ...spec,
      nextRunAt: sameSchedule ? old.nextRunAt : spec.nextRunAt,
      lastRunAt: old?.lastRunAt ?? null,
      pausedAt: old?.pausedAt ?? null,
    });
  }

  removePeriodic(name: string): boolean {
    return this.periodic.delete(checkName("name", name));
  }

  listPeriodic(): PeriodicJob[] {
    return [...this.periodic.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(({ name, type, payload, everyMs, cron, nextRunAt, lastRunAt, pausedAt }) => ({
        name,
        type,
        payload: JSON.parse(payload),
        everyMs,
        cron,
        nextRunAt,
        lastRunAt,
        paused: pausedAt !== null,
        pausedAt,
      }));
  }

  pausePeriodic(name: string): boolean {
    const p = this.periodic.get(checkName("name", name));
    if (!p || p.pausedAt !== null) return false;
    p.pausedAt = this.now();
    return true;
  }

  resumePeriodic(name: string): boolean {
    const p = this.periodic.get(checkName("name", name));
    if (!p || p.pausedAt === null) return false;
    p.pausedAt = null;
    p.nextRunAt = nextPeriodicRun(p, p.nextRunAt, this.now());
    return true;
  }

  firePeriodic(): number {
    const now = this.now();
    let fired = 0;
    for (const p of this.periodic.values()) {
      if (p.nextRunAt > now || p.pausedAt !== null) continue;
      this.insert(periodicJob(p, now));
      p.nextRunAt = nextPeriodicRun(p, p.nextRunAt, now);
      p.lastRunAt = now;
      fired++;
    }
    if (fired > 0) this.events.emit("added");
    return fired;
  }

  claim(owner: string, limit: number, leaseMs: number, types?: readonly string[]): Job[] {
    const now = this.now();
    const due = [...this.jobs.values()]
      .filter((j) => j.state === "pending" && j.runAt <= now && (!types || types.includes(j.type)))
      .sort(byClaimOrder)
      .slice(0, limit);
    for (const j of due) {
      j.state = "running";
      j.attempts++;
      j.leaseOwner = owner;
      j.leaseExpiresAt = now + leaseMs;
      j.startedAt = now;
    }
    return due.map(copy);
  }

  settle(owner: string, settlements: Settlement[]): SettleResult {
    const now = this.now();
    const result: SettleResult = { applied: [], stale: [] };
    for (const s of settlements) {
      const j = this.jobs.get(s.job.id);
      if (j?.state !== "running" || j.leaseOwner !== owner || j.attempts !== s.job.attempts) {
        result.stale.push(s);
        continue;
      }
      j.leaseOwner = null;
      j.leaseExpiresAt = null;
      if (s.ok) {
        Object.assign(j, { state: "completed", finishedAt: now });
        result.applied.push({ ...s, final: true });
      } else if (s.retry && j.attempts < j.maxAttempts) {
        const backoff = j.backoff ? resolveBackoff(this.backoff, j.backoff) : this.backoff;
        Object.assign(j, {
          state: "pending",
          runAt: now + exponentialDelay(j.attempts - 1, backoff),
          lastError: s.error,
        });
        result.applied.push({ ...s, final: false });
      } else {
        Object.assign(j, { state: "failed", finishedAt: now, lastError: s.error });
        result.applied.push({ ...s, final: true });
      }
    }
    return result;
  }

  extendLeases(owner: string, leaseMs: number): number[] {
    const until = this.now() + leaseMs;
    const renewed: number[] = [];
    for (const j of this.jobs.values()) {
      if (j.state === "running" && j.leaseOwner === owner) {
        j.leaseExpiresAt = until;
        renewed.push(j.id);
      }
    }
    return renewed;
  }

  release(owner: string, jobs: Job[]): number {
    let n = 0;
    for (const held of jobs) {
      const j = this.jobs.get(held.id);
      if (j && j.state === "running" && j.leaseOwner === owner && j.attempts === held.attempts) {
        Object.assign(j, {
          state: "pending",
          attempts: j.attempts - 1,
          leaseOwner: null,
          leaseExpiresAt: null,
          startedAt: null,
        });
        n++;
      }
    }
    if (n > 0) this.events.emit("added");
    return n;
  }

  reapExpired(): number {
    const now = this.now();
    let n = 0;
    for (const j of this.jobs.values()) {
      if (j.state !== "running" || (j.leaseExpiresAt ?? 0) >= now) continue;
      const final = j.attempts >= j.maxAttempts;
      j.lastError = `lease expired: worker ${j.leaseOwner ?? "?"} stopped renewing it`;
      Object.assign(j, {
        state: final ? "failed" : "pending",
        finishedAt: final ? now : null,
        runAt: now,
        leaseOwner: null,
        leaseExpiresAt: null,
      });
      n++;
    }
    if (n > 0) this.events.emit("added");
    return n;
  }

  onAdded(listener: () => void): () => void {
    this.events.on("added", listener);
    return () => this.events.off("added", listener);
  }

  // The operator's console, with the Queue's rules (admin.ts).

  search(options?: SearchOptions): JobPage {
    const o = normalizeList(options);
    const key = o.sortBy === "created" ? "id" : o.sortBy;
    const dir = o.order === "desc" ? -1 : 1;
    const all = this.matching(options).sort((a, b) => dir * (a[key] - b[key] || a.id - b.id));
    return { jobs: all.slice(o.offset, o.offset + o.limit).map(copy), total: all.length };
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
      this.events.emit("added");
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

/** Callers get their own copy, payload included, as they would from a row read back from SQLite. */
function copy(job: Job): Job {
  return {
    ...job,
    payload: structuredClone(job.payload),
    backoff: job.backoff && { ...job.backoff },
  };
}

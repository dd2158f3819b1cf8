/**
 * The job queue's public shapes, shared by the SQLite `Queue`, the in-process
 * `MemoryQueue` and the `Worker` that drives either of them.
 */
export const JOB_STATES = ["pending", "running", "completed", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINISHED_STATES: readonly JobState[] = ["completed", "failed", "cancelled"];

/** A count for every state, all 0. */
export function zeroPerState(): Record<JobState, number> {
  return Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
}

export interface BackoffOptions {
  /** Delay before the first retry. */
  baseMs?: number;
  /** Cap on any one delay. */
  maxMs?: number;
  /** Growth per attempt. */
  factor?: number;
  /** Fraction of the delay drawn at random, 0..1 (0.2 = ±20%). */
  jitter?: number;
}

export interface Job<P = unknown> {
  id: number;
  queue: string;
  type: string;
  payload: P;
  state: JobState;
  priority: number;
  runAt: number;
  attempts: number;
  maxAttempts: number;
  backoff: BackoffOptions | null;
  key: string | null;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  lastError: string | null;
  /** This job's own limit on one attempt, ms (null: the worker's limit for its type, if any). */
  timeoutMs: number | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /**
   * The W3C traceparent of the span that was active at `add()`, kept so the run's span is its
   * child in any process (null: tracing was off, or no span was active; see enableTracing).
   */
  trace: string | null;
}

export interface AddOptions {
  /** Higher runs first. Integer. */
  priority?: number;
  /** When the job becomes due (epoch ms or Date). Exclusive with delayMs. */
  runAt?: number | Date;
  delayMs?: number;
  maxAttempts?: number;
  backoff?: BackoffOptions;
  /** Unique among the queue's unfinished jobs: adding a taken key returns the existing job. */
  key?: string;
  /**
   * An attempt that runs longer fails ("timed out after N ms") and is retried along the
   * backoff; the handler's signal is aborted. Wins over the worker's limit for the type.
   */
  timeoutMs?: number;
}

export interface AddManyItem<P = unknown> {
  type: string;
  payload?: P;
  options?: AddOptions;
}

export type SortBy = "created" | "priority" | "runAt";
export interface ListOptions {
  state?: JobState;
  type?: string;
  limit?: number;
  offset?: number;
  sortBy?: SortBy;
  order?: "asc" | "desc";
}

export interface QueueStats extends Record<JobState, number> {
  total: number;
  /** Mean attempts over all jobs in the queue (0 when empty). */
  averageAttempts: number;
  /** How long the oldest due pending job has waited, ms (0 when none). */
  oldestPendingAgeMs: number;
  /** Attempts spent, summed per state: many attempts on pending jobs mean retries piling up. */
  attempts: Record<JobState, number>;
}

export interface StuckOptions {
  /** A running job started longer ago than this is stuck, even while its lease is renewed (default 5 min). */
  olderThanMs?: number;
  /** A due pending job that has waited longer than this is stuck (default: olderThanMs). */
  pendingForMs?: number;
}

export interface CleanupOptions {
  olderThanMs?: number;
  states?: JobState[];
}

export interface PeriodicOptions {
  priority?: number;
  maxAttempts?: number;
  /** IANA zone for cron expressions (default: the process's). */
  timezone?: string;
}

export interface PeriodicJob {
  name: string;
  type: string;
  payload: unknown;
  everyMs: number | null;
  cron: string | null;
  /** When it fires next; while paused, when it would have (resuming moves it past the pause). */
  nextRunAt: number;
  lastRunAt: number | null;
  /** A paused schedule does not fire (see `pausePeriodic`). */
  paused: boolean;
  pausedAt: number | null;
}

/**
 * A queue's API, as both Queue and MemoryQueue provide it. The worker's side
 * (claims, leases, outcomes) is not part of it: see src/queue/source.ts.
 */
export interface JobQueue {
  readonly name: string;
  add<P>(type: string, payload?: P, options?: AddOptions): Job<P>;
  addMany(items: AddManyItem[]): Job[];
  get(id: number): Job | undefined;
  list(options?: ListOptions): Job[];
  moveToState(id: number, to: JobState, options?: { from?: JobState | JobState[] }): boolean;
  retry(id: number): boolean;
  cancel(id: number): boolean;
  stats(): QueueStats;
  stuck(options?: StuckOptions): Job[];
  cleanup(options?: CleanupOptions): number;
  every(name: string, everyMs: number, type: string, payload?: unknown, options?: PeriodicOptions): void;
  cron(name: string, expression: string, type: string, payload?: unknown, options?: PeriodicOptions): void;
  removePeriodic(name: string): boolean;
  listPeriodic(): PeriodicJob[];
  /** Stops a schedule firing until resumed; false when there is none of that name or it is paused already. */
  pausePeriodic(name: string): boolean;
  /**
   * Lets a paused schedule fire again, from its first slot after now: the runs it missed
   * while paused are skipped, not fired at once. False when none of that name is paused.
   */
  resumePeriodic(name: string): boolean;
  /** Enqueues every periodic job whose time has come; returns how many fired. */
  firePeriodic(): number;

  /** The operator's console: a filtered page with its total, and actions on one job or a filter's jobs. */
  search(options?: SearchOptions): JobPage;
  count(filter?: JobFilter): number;
  update(id: number, patch: JobUpdate): boolean;
  remove(id: number): boolean;
  act(action: JobAction, id: number, options?: { priority?: number }): boolean;
  bulk(action: JobAction, filter?: JobFilter, options?: BulkOptions): number;

  /** The queue's clock, epoch ms (the `clock` option, else Date.now). */
  now(): number;
}

/** Which jobs of a queue an operator means: all given conditions hold. */
export interface JobFilter {
  state?: JobState;
  type?: string;
  /** Text the payload (as JSON) or the last error contains; ASCII letters match either case. */
  q?: string;
}

export interface SearchOptions extends ListOptions, JobFilter {}

/** One page of a search, and how many jobs match in all. */
export interface JobPage {
  jobs: Job[];
  total: number;
}

/** A pending job's new priority and/or due time. */
export interface JobUpdate {
  priority?: number;
  runAt?: number | Date;
}

/**
 * What an operator may do to a job or to every job matching a filter:
 * retry (failed or cancelled), cancel (pending or running), run (a pending
 * job becomes due now), priority (of a pending job), delete (any job not running).
 */
export const JOB_ACTIONS = ["retry", "cancel", "run", "priority", "delete"] as const;
export type JobAction = (typeof JOB_ACTIONS)[number];

export interface BulkOptions {
  /** The new priority, for the "priority" action. */
  priority?: number;
  /** How many jobs the caller saw match the filter: a different count refuses the action (ERR_COUNT_CHANGED). */
  expect?: number;
}

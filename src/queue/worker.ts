/**
 * Worker: runs handlers for the jobs of one queue.
 *
 * Contract: at most `concurrency` handlers run at once. Jobs are claimed in
 * batches into a small local buffer and settled (completed, retried, failed)
 * in batches, one transaction per batch, on the next turn of the event loop.
 * Leases of every held job are renewed on a timer. `stop()` stops claiming,
 * returns buffered jobs that never started, waits for handlers in flight and
 * writes their outcomes. A handler gets an AbortSignal that fires when the
 * worker learns, at a lease renewal, that the job is no longer its own
 * (cancelled, or reaped after a lapse): the outcome would be dropped anyway,
 * so a long handler should stop. An attempt that outlives its time limit (the
 * job's `timeoutMs`, else the worker's for its type) fails at once, "timed out
 * after N ms", and is retried along the backoff: its signal is aborted, its
 * slot is freed, and whatever the handler does later is ignored. `stop({
 * timeoutMs })` returns after that long even if a handler never settles:
 * those jobs keep their lease until it expires and the reaper takes them. Events: "completed" (job, runMs), "failed" (job,
 * error, final, runMs), "stale" (job: its lease was lost before the outcome was
 * written), "error" (err: the queue itself failed; the worker keeps polling).
 */

import { EventEmitter } from "node:events";
import { jobDuration, jobsCompleted, jobsFailed } from "../metrics.js";
import { type SpanHandle, startSpan, tracingEnabled } from "../trace.js";
import { type Handler, type HandlerContext, type Handlers, JobTimeoutError, LazyContext } from "./handler.js";
import { type Settlement, type WorkerSource, workerSource } from "./source.js";
import { describeThrown, UnrecoverableError } from "./thrown.js";
import type { Job, JobQueue } from "./types.js";
import { type StopOptions, stopLimit, type WorkerOptions, workerSettings } from "./worker-options.js";

export type { StopOptions, WorkerOptions } from "./worker-options.js";
export { type Handler, type HandlerContext, type Handlers, JobTimeoutError, UnrecoverableError };

export class Worker extends EventEmitter {
  readonly id: string;
  private readonly concurrency: number;
  private readonly pollIntervalMs: number;
  private readonly leaseMs: number;
  private readonly batchSize: number;
  private readonly reapIntervalMs: number;
  private readonly types: readonly string[] | undefined;
  private readonly timeoutMs: number | null;
  private readonly timeouts: ReadonlyMap<string, number>;
  /** Bumped when stop({ timeoutMs }) abandons running handlers: their outcomes are then dropped. */
  private generation = 0;
  private readonly buffer: Job[] = [];
  private readonly outcomes: Settlement[] = [];
  private readonly durations = new Map<number, number>();
  /** Running handlers by job id, to abort those whose lease is gone. */
  private readonly contexts = new Map<Job, LazyContext>();
  private inFlight = 0;
  private running = false;
  private flushScheduled = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private leaseTimer: NodeJS.Timeout | null = null;
  private lastReap = 0;
  /** The last claim got less than it asked for: wait for a wake-up or the poll before claiming again. */
  private drained = false;
  private unsubscribe: (() => void) | null = null;
  private idleWaiters: Array<() => void> = [];
  private stopping: Promise<void> | null = null;
  /** The queue's worker side (claims, leases, outcomes), which its public type does not show. */
  private readonly source: WorkerSource;

  constructor(
    readonly queue: JobQueue,
    private readonly handlers: Handlers,
    options: WorkerOptions = {},
  ) {
    super();
    this.source = workerSource(queue);
    const settings = workerSettings(handlers, options);
    this.id = settings.id;
    this.concurrency = settings.concurrency;
    this.pollIntervalMs = settings.pollIntervalMs;
    this.leaseMs = settings.leaseMs;
    this.batchSize = settings.batchSize;
    this.reapIntervalMs = settings.reapIntervalMs;
    this.types = settings.types;
    this.timeoutMs = settings.timeoutMs;
    this.timeouts = settings.timeouts;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Jobs claimed by this worker and not yet settled. */
  get held(): number {
    return this.buffer.length + this.inFlight;
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    this.stopping = null;
    this.unsubscribe = this.source.onAdded(() => this.wake());
    this.leaseTimer = setInterval(() => this.renewLeases(), Math.max(10, Math.floor(this.leaseMs / 3)));
    this.leaseTimer.unref();
    this.wake();
    return this;
  }

  /**
   * Stops claiming, releases unstarted jobs, waits for running handlers (at most
   * `timeoutMs`, when given), writes their outcomes.
   */
  stop(options: StopOptions = {}): Promise<void> {
    const limit = stopLimit(options);
    if (this.stopping) return this.stopping;
    this.running = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.stopping = (async () => {
      const unstarted = this.buffer.splice(0);
      if (unstarted.length > 0) this.guard(() => this.source.release(this.id, unstarted));
      const deadline = limit === null ? null : performance.now() + limit;
      while (this.inFlight > 0) {
        const left = deadline === null ? null : deadline - performance.now();
        if (left !== null && left <= 0) {
          this.abandon(limit!);
          break;
        }
        await new Promise<void>((r) => {
          this.idleWaiters.push(r);
          if (left !== null) setTimeout(r, left);
        });
      }
      this.flush();
      if (this.leaseTimer) clearInterval(this.leaseTimer);
      this.leaseTimer = null;
    })();
    return this.stopping;
  }

  /** stop() waited long enough: drop the running handlers, leaving their jobs to lease expiry. */
  private abandon(waitedMs: number): void {
    this.generation++;
    for (const [job, context] of this.contexts) {
      context.abort(
        new Error(
          `worker ${this.id} stopped after waiting ${waitedMs} ms; job ${job.id} is left to lease expiry`,
        ),
      );
      this.durations.delete(job.id);
    }
    this.contexts.clear();
    this.inFlight = 0;
  }

  private wake(): void {
    if (!this.running) return;
    if (this.pollTimer) {
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
    }
    this.drained = false;
    this.fill();
    this.dispatch();
  }

  /** Tops up the local buffer; if the queue had nothing, polls again later. */
  private fill(): void {
    if (!this.running || this.buffer.length >= this.concurrency) return;
    const now = this.source.now();
    if (now - this.lastReap >= this.reapIntervalMs) {
      this.lastReap = now;
      this.guard(() => this.source.reapExpired());
    }
    // Whole batches: one claim transaction per batchSize jobs, taken when the buffer runs low.
    const room = this.batchSize;
    const claimed = this.guard(() => this.source.claim(this.id, room, this.leaseMs, this.types)) ?? [];
    for (const job of claimed) this.buffer.push(job);
    this.drained = claimed.length < room;
    if (claimed.length === 0 && this.inFlight === 0 && this.buffer.length === 0) this.schedulePoll();
  }

  private schedulePoll(): void {
    if (!this.running || this.pollTimer) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.wake();
    }, this.pollIntervalMs);
  }

  private dispatch(): void {
    const lapsed: Job[] = [];
    const now = this.buffer.length > 0 ? this.source.now() : 0;
    while (this.inFlight < this.concurrency && this.buffer.length > 0) {
      const job = this.buffer.shift()!;
      // A buffered job whose lease may have lapsed may have been reaped and claimed by another
      // worker: starting it would run it twice. Hand it back (a no-op if it is no longer ours).
      if (job.leaseExpiresAt !== null && job.leaseExpiresAt < now) {
        lapsed.push(job);
        continue;
      }
      this.inFlight++;
      // run() catches what a handler throws; this catch is for a bug of ours, which must not
      // become an unhandled rejection that ends the process (in the daemon, the hub).
      this.run(job).catch((err) =>
        this.guard(() => {
          throw err;
        }),
      );
    }
    if (lapsed.length > 0) this.guard(() => this.source.release(this.id, lapsed));
  }

  private async run(job: Job): Promise<void> {
    const started = performance.now();
    const generation = this.generation;
    let outcome: Settlement;
    // Own properties only: a job of type "toString" or "__proto__" must not find Object.prototype's.
    const handler = Object.hasOwn(this.handlers, job.type) ? this.handlers[job.type] : undefined;
    const context = new LazyContext();
    this.contexts.set(job, context);
    const limit = job.timeoutMs ?? this.timeouts.get(job.type) ?? this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    // Tested first: with tracing off, not even the span's attributes are built.
    const span = tracingEnabled() ? this.runSpan(job) : undefined;
    try {
      if (!handler)
        throw new UnrecoverableError(`no handler for job type "${job.type}" in worker ${this.id}`);
      const work = span ? span.run(() => handler(job, context)) : handler(job, context);
      if (limit === null) await work;
      else {
        // The handler may never settle: the attempt ends at the limit all the same, and its
        // promise is left behind (race subscribed to it, so a late rejection is handled).
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const err = new JobTimeoutError(limit);
            context.abort(err);
            reject(err);
          }, limit);
        });
        await Promise.race([work, expired]);
      }
      outcome = { job, ok: true };
    } catch (err) {
      const { message, unrecoverable } = describeThrown(err);
      outcome = { job, ok: false, error: message, retry: !unrecoverable };
      span?.fail(err);
    } finally {
      span?.end();
      clearTimeout(timer);
      if (generation === this.generation) this.contexts.delete(job);
    }
    // stop({ timeoutMs }) gave up on this handler: its job is left to lease expiry.
    if (generation !== this.generation) return;
    this.durations.set(job.id, (performance.now() - started) / 1000);
    this.outcomes.push(outcome);
    this.inFlight--;
    // Handlers that never yield to the event loop would starve setImmediate: flush full batches now.
    if (this.outcomes.length >= this.batchSize) this.flush();
    else this.scheduleFlush();
    if (this.running) {
      if (this.buffer.length < this.concurrency && !this.drained) this.fill();
      this.dispatch();
    }
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * The span of one attempt: a child of the span that was active at add() (kept in the
   * job's row), else a root — never whatever happens to be active here, which is often
   * the add() that woke this worker, for a job it did not create.
   */
  private runSpan(job: Job): SpanHandle | undefined {
    return startSpan(`run ${job.type}`, {
      kind: "consumer",
      parent: job.trace,
      attributes: {
        "messaging.system": "tidewire",
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": String(job.id),
        "tidewire.job.type": job.type,
        "tidewire.job.attempt": job.attempts,
        "tidewire.worker.id": this.id,
      },
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Writes every outcome gathered since the last flush in one transaction. */
  private flush(): void {
    if (this.outcomes.length === 0) return;
    const batch = this.outcomes.splice(0);
    const result = this.guard(() => this.source.settle(this.id, batch));
    if (!result) {
      // The write failed (and was already retried): keep the outcomes for the next flush.
      this.outcomes.unshift(...batch);
      setTimeout(() => this.scheduleFlush(), this.pollIntervalMs).unref();
      return;
    }
    for (const s of result.applied) {
      const seconds = this.durations.get(s.job.id) ?? 0;
      this.durations.delete(s.job.id);
      jobDuration.labels(s.job.type).observe(seconds);
      if (s.ok) {
        jobsCompleted.labels(s.job.type).inc();
        if (this.listenerCount("completed") > 0) this.emit("completed", s.job, seconds * 1000);
      } else {
        jobsFailed.labels(s.job.type).inc();
        if (this.listenerCount("failed") > 0)
          this.emit("failed", s.job, new Error(s.error), s.final, seconds * 1000);
      }
    }
    for (const s of result.stale) {
      this.durations.delete(s.job.id);
      if (this.listenerCount("stale") > 0) this.emit("stale", s.job);
    }
    if (this.running && this.buffer.length === 0 && this.inFlight === 0) this.wake();
    else if (this.running && this.drained) this.schedulePoll();
  }

  private renewLeases(): void {
    if (this.held === 0) return;
    const from = this.source.now();
    const renewed = this.guard(() => this.source.extendLeases(this.id, this.leaseMs));
    if (renewed === undefined) return;
    const held = new Set(renewed);
    for (const [job, context] of this.contexts) {
      if (!held.has(job.id))
        context.abort(new Error(`job ${job.id} is no longer leased to worker ${this.id}`));
    }
    // A buffered job whose lease was still valid when the renewal ran cannot have been reaped, so the
    // renewal extended it; any other may be gone, and keeps its old expiry so dispatch drops it.
    const after = this.source.now();
    for (const job of this.buffer) {
      if (job.leaseExpiresAt !== null && job.leaseExpiresAt >= after)
        job.leaseExpiresAt = from + this.leaseMs;
    }
  }

  private guard<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (this.listenerCount("error") > 0) this.emit("error", err);
      return undefined;
    }
  }
}

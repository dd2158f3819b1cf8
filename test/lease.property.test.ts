/**
 * Property: no job is held by two workers at once while its lease is valid.
 *
 * Several Workers share one queue (each with its own Store connection to one
 * SQLite file, or all on one MemoryQueue). Everything runs on fake time:
 * vitest's fake timers drive the workers' poll, flush and lease-renewal timers
 * and the handlers' durations, and the queues read a clock that is the fake
 * timer clock plus a `skew` the test can jump.
 *
 * How leases are made to lapse (each is something a real deployment sees):
 * - "jump": the queue clock leaps forward by more than leaseMs with no timer
 *   firing in between. To the queue this is exactly what it sees when every
 *   worker's renewal timer runs late (a frozen VM, a blocked event loop), so
 *   the leases of everything held lapse, and whoever reaps first wins.
 * - "starve": from now on this worker's renewals fail (its extendLeases throws
 *   SQLITE_BUSY, as Store.retrying does once its retries are spent). The worker
 *   keeps claiming, running and settling: its leases lapse under its running
 *   handlers, others take the jobs, and its late settlements must be stale.
 * - "crash": the worker's process dies. Every queue call it makes throws (its
 *   connection is gone), and it starts no handler any more (a dead process runs
 *   nothing); the handlers it had in flight count as still holding their jobs,
 *   which is conservative: nobody may take them before their leases expire.
 * Handlers fail at random (throw) and run for random durations, some longer
 * than the lease, so renewal matters.
 *
 * What "held" means: a worker holds a job from the claim that leased it to it
 * until that claim is settled (applied or stale) or released. The queue's lease
 * expiry for each hold is tracked from the claim's RETURNING row and, after each
 * renewal, from the rows the renewal extended. Whenever a handler starts (and
 * whenever the queue hands a job out), every hold another worker still has on
 * that job must have expired by the queue clock. Each handler start and end is
 * recorded with its job, worker, attempt and lease expiry.
 *
 * This found a Worker bug: a job claimed into the local buffer could be started
 * after its lease had lapsed and another worker had reaped and claimed it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MemoryQueue } from "../src/queue/memory-queue.js";
import { Queue } from "../src/queue/queue.js";
import { provideSource, type Settlement, type SettleResult, workerSource } from "../src/queue/source.js";
import type { BackoffOptions, Job, JobQueue, JobState } from "../src/queue/types.js";
import { Worker } from "../src/queue/worker.js";
import { openStore, type Store } from "../src/store.js";

const LEASE_MS = 50;
const BACKOFF: BackoffOptions = { baseMs: 10, factor: 2, maxMs: 80, jitter: 0 };
const START = 1_700_000_000_000;

type Action =
  | { kind: "tick"; ms: number }
  | { kind: "jump"; ms: number }
  | { kind: "starve"; worker: number }
  | { kind: "crash"; worker: number };

interface Scenario {
  workers: Array<{ concurrency: number; extraBatch: number }>;
  jobs: number[]; // maxAttempts per job
  behaviours: Array<{ durationMs: number; fail: boolean }>;
  actions: Action[];
}

/** The row fields a settlement may change. */
interface RowView {
  state: JobState;
  attempts: number;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  lastError: string | null;
  runAt: number;
  finishedAt: number | null;
  maxAttempts: number;
}

interface Peek {
  row(id: number): RowView | undefined;
  ownedRunning(owner: string): Array<{ id: number; attempts: number; leaseExpiresAt: number }>;
}

interface Hold {
  worker: string;
  jobId: number;
  attempt: number;
  claimedAt: number;
  expiresAt: number;
  open: boolean;
}

interface HandlerRecord {
  jobId: number;
  worker: string;
  attempt: number;
  startAt: number;
  leaseAtStart: number;
  endAt?: number;
  leaseAtEnd?: number;
  failed?: boolean;
}

class World {
  skew = 0;
  readonly holds = new Map<number, Hold[]>();
  readonly records: HandlerRecord[] = [];
  readonly violations: string[] = [];
  readonly starved = new Set<string>();
  readonly crashed = new Set<string>();
  stale = 0;
  /** Queue errors the workers reported, by worker. */
  readonly errors: Array<{ worker: string; message: string }> = [];

  readonly clock = (): number => Date.now() + this.skew;

  holdsOf(jobId: number): Hold[] {
    let list = this.holds.get(jobId);
    if (!list) {
      list = [];
      this.holds.set(jobId, list);
    }
    return list;
  }

  openHold(worker: string, jobId: number, attempt: number): Hold | undefined {
    return this.holdsOf(jobId).find((h) => h.open && h.worker === worker && h.attempt === attempt);
  }
}

function crashError(worker: string): Error {
  return new Error(`worker ${worker}'s process has crashed`);
}

function busyError(): Error {
  return Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
}

/** Wraps the queue one worker sees, recording leases and checking every settlement. */
function observe(queue: JobQueue, me: string, peek: Peek, world: World): JobQueue {
  const inner = workerSource(queue);
  const closeHolds = (owner: string, jobs: Job[]) => {
    for (const job of jobs) {
      const hold = world.openHold(owner, job.id, job.attempts);
      if (hold) hold.open = false;
    }
  };
  const claim = (owner: string, limit: number, leaseMs: number): Job[] => {
    const jobs = inner.claim(owner, limit, leaseMs);
    for (const job of jobs) {
      if (job.leaseOwner !== owner || job.leaseExpiresAt === null || job.startedAt === null) {
        world.violations.push(`claim of job ${job.id} returned no lease for ${owner}`);
        continue;
      }
      for (const h of world.holdsOf(job.id)) {
        if (h.open && h.worker !== owner && !(h.expiresAt < job.startedAt)) {
          world.violations.push(
            `job ${job.id} claimed by ${owner} at ${job.startedAt} while ${h.worker} held it until ${h.expiresAt}`,
          );
        }
      }
      world.holdsOf(job.id).push({
        worker: owner,
        jobId: job.id,
        attempt: job.attempts,
        claimedAt: job.startedAt,
        expiresAt: job.leaseExpiresAt,
        open: true,
      });
    }
    return jobs;
  };

  const extendLeases = (owner: string, leaseMs: number): number[] => {
    if (world.starved.has(owner)) throw busyError();
    const n = inner.extendLeases(owner, leaseMs);
    for (const row of peek.ownedRunning(owner)) {
      const hold = world.openHold(owner, row.id, row.attempts);
      if (hold) hold.expiresAt = row.leaseExpiresAt;
      else world.violations.push(`renewal extended job ${row.id} that ${owner} never claimed`);
    }
    return n;
  };

  const settle = (owner: string, batch: Settlement[]): SettleResult => {
    const before = new Map(batch.map((s) => [s.job.id, peek.row(s.job.id)]));
    // The worker gives these holds up whatever the outcome. Closed first: the call may wake other
    // workers synchronously (a shared MemoryQueue emits "added"), and they may claim at once.
    closeHolds(
      owner,
      batch.map((s) => s.job),
    );
    const result = inner.settle(owner, batch);
    const appliedTo = new Map(result.applied.map((s) => [s.job.id, s]));
    for (const s of result.applied) {
      const was = before.get(s.job.id);
      if (was?.state !== "running" || was.leaseOwner !== owner || was.attempts !== s.job.attempts) {
        world.violations.push(
          `settlement of job ${s.job.id} by ${owner} applied without its lease: ${JSON.stringify(was)}`,
        );
      }
      const now = peek.row(s.job.id);
      const expected: Partial<RowView> = s.ok
        ? { state: "completed", leaseOwner: null }
        : { state: s.final ? "failed" : "pending", leaseOwner: null, lastError: s.error };
      for (const [k, v] of Object.entries(expected)) {
        if (now?.[k as keyof RowView] !== v) {
          world.violations.push(
            `settlement of job ${s.job.id} attempt ${s.job.attempts} left ${JSON.stringify(now)}, expected ${JSON.stringify(expected)}`,
          );
          break;
        }
      }
    }
    for (const s of result.stale) {
      world.stale++;
      // One worker may settle two attempts of a job in one batch (it ran attempt 1 on a lost lease,
      // then reclaimed the job): the row must then show the applied one's outcome, checked above.
      if (appliedTo.has(s.job.id)) continue;
      const was = before.get(s.job.id);
      const now = peek.row(s.job.id);
      if (JSON.stringify(was) !== JSON.stringify(now)) {
        world.violations.push(
          `stale settlement of job ${s.job.id} attempt ${s.job.attempts} by ${owner} changed it: ` +
            `${JSON.stringify(was)} -> ${JSON.stringify(now)}`,
        );
      }
    }
    return result;
  };

  const release = (owner: string, jobs: Job[]): number => {
    closeHolds(owner, jobs);
    return inner.release(owner, jobs);
  };

  // Once a worker's process has crashed, every queue call it makes throws; now and onAdded do not
  // reach the database.
  const alive =
    <A extends unknown[], R>(fn: (...args: A) => R) =>
    (...args: A): R => {
      if (world.crashed.has(me)) throw crashError(me);
      return fn(...args);
    };
  // A queue object of its own, so the worker finds this wrapped source for it.
  const facade = new Proxy(queue, {});
  provideSource(facade, {
    now: () => inner.now(),
    onAdded: (listener) => inner.onAdded(listener),
    claim: alive(claim),
    extendLeases: alive(extendLeases),
    settle: alive(settle),
    release: alive(release),
    reapExpired: alive(() => inner.reapExpired()),
  });
  return facade;
}

interface Harness {
  queueFor(worker: string): { queue: JobQueue; peek: Peek };
  /** A queue for the test itself (adding jobs, reading results). */
  main: JobQueue;
  close(): void;
}

function sqliteHarness(world: World): Harness {
  const dir = mkdtempSync(join(tmpdir(), "tw-lease-"));
  const file = join(dir, "q.db");
  const stores: Store[] = [];
  const open = () => {
    const store = openStore(file);
    stores.push(store);
    return store;
  };
  const mainStore = open();
  const main = new Queue(mainStore, "default", { clock: world.clock, backoff: BACKOFF });
  return {
    main,
    queueFor() {
      const store = open();
      const queue = new Queue(store, "default", { clock: world.clock, backoff: BACKOFF });
      const rowStmt = store.db.prepare(
        `SELECT state, attempts, lease_owner AS leaseOwner, lease_expires_at AS leaseExpiresAt,
                last_error AS lastError, run_at AS runAt, finished_at AS finishedAt, max_attempts AS maxAttempts
           FROM tw_jobs WHERE id = ?`,
      );
      const ownedStmt = store.db.prepare(
        `SELECT id, attempts, lease_expires_at AS leaseExpiresAt FROM tw_jobs
          WHERE state = 'running' AND lease_owner = ?`,
      );
      return {
        queue,
        peek: {
          row: (id) => rowStmt.get(id) as RowView | undefined,
          ownedRunning: (owner) =>
            ownedStmt.all(owner) as Array<{ id: number; attempts: number; leaseExpiresAt: number }>,
        },
      };
    },
    close() {
      for (const s of stores) s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function memoryHarness(world: World, jobCount: number): Harness {
  const main = new MemoryQueue("default", { clock: world.clock, backoff: BACKOFF });
  const view = (j: Job): RowView => ({
    state: j.state,
    attempts: j.attempts,
    leaseOwner: j.leaseOwner,
    leaseExpiresAt: j.leaseExpiresAt,
    lastError: j.lastError,
    runAt: j.runAt,
    finishedAt: j.finishedAt,
    maxAttempts: j.maxAttempts,
  });
  const peek: Peek = {
    row: (id) => {
      const j = main.get(id);
      return j && view(j);
    },
    ownedRunning: (owner) => {
      const out: Array<{ id: number; attempts: number; leaseExpiresAt: number }> = [];
      for (let id = 1; id <= jobCount; id++) {
        const j = main.get(id);
        if (j && j.state === "running" && j.leaseOwner === owner) {
          out.push({ id, attempts: j.attempts, leaseExpiresAt: j.leaseExpiresAt as number });
        }
      }
      return out;
    },
  };
  return { main, queueFor: () => ({ queue: main, peek }), close() {} };
}

const workerArb = fc.record({
  concurrency: fc.integer({ min: 1, max: 3 }),
  extraBatch: fc.integer({ min: 0, max: 4 }),
});
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({ kind: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 30 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("jump" as const),
      ms: fc.integer({ min: LEASE_MS + 1, max: 3 * LEASE_MS }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("starve" as const), worker: fc.integer({ min: 0, max: 4 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("crash" as const), worker: fc.integer({ min: 0, max: 4 }) }),
  },
);
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  workers: fc.array(workerArb, { minLength: 3, maxLength: 5 }),
  jobs: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 25 }),
  behaviours: fc.array(
    fc.record({ durationMs: fc.integer({ min: 0, max: 2 * LEASE_MS }), fail: fc.boolean() }),
    { minLength: 1, maxLength: 16 },
  ),
  actions: fc.array(actionArb, { minLength: 5, maxLength: 40 }),
});

async function runScenario(kind: "sqlite" | "memory", sc: Scenario): Promise<void> {
  const world = new World();
  vi.useFakeTimers({
    toFake: [
      "setTimeout",
      "clearTimeout",
      "setInterval",
      "clearInterval",
      "setImmediate",
      "clearImmediate",
      "Date",
    ],
    now: START,
  });
  const harness = kind === "sqlite" ? sqliteHarness(world) : memoryHarness(world, sc.jobs.length);
  try {
    const added = harness.main.addMany(
      sc.jobs.map((maxAttempts, i) => ({ type: "work", payload: { i }, options: { maxAttempts } })),
    );
    const maxAttemptsOf = new Map(added.map((j) => [j.id, j.maxAttempts]));

    const workers: Worker[] = [];
    const startWorker = (id: string, concurrency: number, extraBatch: number) => {
      const { queue, peek } = harness.queueFor(id);
      const handler = async (job: Job) => {
        // A dead process runs nothing: the crashed worker's buffered jobs never start.
        if (world.crashed.has(id)) return;
        const t = world.clock();
        for (const h of world.holdsOf(job.id)) {
          if (h.open && h.worker !== id && !(h.expiresAt < t)) {
            world.violations.push(
              `handler for job ${job.id} attempt ${job.attempts} started on ${id} at ${t} while ` +
                `${h.worker} held it (attempt ${h.attempt}) with a lease valid until ${h.expiresAt}`,
            );
          }
        }
        const own = world.openHold(id, job.id, job.attempts);
        if (!own) world.violations.push(`handler for job ${job.id} started on ${id} without a claim`);
        if (job.attempts > (maxAttemptsOf.get(job.id) ?? 0)) {
          world.violations.push(`job ${job.id} ran attempt ${job.attempts} beyond its maxAttempts`);
        }
        const rec: HandlerRecord = {
          jobId: job.id,
          worker: id,
          attempt: job.attempts,
          startAt: t,
          leaseAtStart: own?.expiresAt ?? Number.NaN,
        };
        world.records.push(rec);
        const b = sc.behaviours[(job.id * 31 + job.attempts) % sc.behaviours.length]!;
        try {
          await new Promise((r) => setTimeout(r, b.durationMs));
          if (b.fail) throw new Error(`boom ${job.id}/${job.attempts}`);
        } finally {
          rec.endAt = world.clock();
          rec.leaseAtEnd = own?.expiresAt;
          rec.failed = b.fail;
        }
      };
      const w = new Worker(
        observe(queue, id, peek, world),
        { work: handler },
        {
          id,
          concurrency,
          batchSize: concurrency + extraBatch,
          leaseMs: LEASE_MS,
          pollIntervalMs: 5,
          reapIntervalMs: 5,
        },
      );
      w.on("error", (err: Error) => world.errors.push({ worker: id, message: err.message }));
      workers.push(w);
      w.start();
    };
    for (const [i, w] of sc.workers.entries()) startWorker(`w${i}`, w.concurrency, w.extraBatch);

    const advance = async (ms: number) => {
      await vi.advanceTimersByTimeAsync(ms);
    };
    for (const a of sc.actions) {
      const target = "worker" in a ? workers[a.worker % workers.length]!.id : "";
      if (a.kind === "tick") await advance(a.ms);
      else if (a.kind === "jump") world.skew += a.ms;
      else if (a.kind === "starve") world.starved.add(target);
      else world.crashed.add(target);
      await advance(0);
    }

    // Recovery: a fresh worker (a restarted process) joins; time runs on until every job is finished.
    startWorker("recovery", 2, 2);
    const unfinished = () =>
      added.filter((j) => {
        const s = harness.main.get(j.id)!.state;
        return s !== "completed" && s !== "failed";
      });
    for (let elapsed = 0; unfinished().length > 0; elapsed += 10) {
      if (elapsed > 60_000) throw new Error(`jobs never finished: ${JSON.stringify(unfinished())}`);
      await advance(10);
    }
    // Graceful stop of every live worker; handlers still running on lost leases finish and settle stale.
    let stopped = false;
    const stops = Promise.all(workers.filter((w) => !world.crashed.has(w.id)).map((w) => w.stop())).then(
      () => {
        stopped = true;
      },
    );
    for (let elapsed = 0; !stopped; elapsed += 10) {
      if (elapsed > 10_000) throw new Error("workers did not stop");
      await advance(10);
    }
    await stops;

    expect(world.violations).toEqual([]);
    // Only the workers whose renewals were made to fail, or that crashed, saw queue errors.
    expect(world.errors.filter((e) => !world.starved.has(e.worker) && !world.crashed.has(e.worker))).toEqual(
      [],
    );
    for (const j of added) {
      const final = harness.main.get(j.id)!;
      expect(["completed", "failed"]).toContain(final.state);
      expect(final.attempts).toBeLessThanOrEqual(final.maxAttempts);
      expect(final.attempts).toBeGreaterThanOrEqual(1);
      expect(final.leaseOwner).toBeNull();
    }
    for (const r of world.records) {
      if (world.crashed.has(r.worker)) continue;
      expect(r.endAt, `handler of job ${r.jobId} on ${r.worker} never ended`).toBeDefined();
    }
    stats.runs++;
    stats.stale += world.stale;
    stats.handlers += world.records.length;
    stats.overlaps += countOverlaps(world.records);
  } finally {
    vi.clearAllTimers();
    vi.useRealTimers();
    harness.close();
  }
}

/** Handler runs of one job on two workers that overlapped in time (legal once a lease lapsed). */
function countOverlaps(records: HandlerRecord[]): number {
  let n = 0;
  for (const a of records) {
    for (const b of records) {
      const sameJobElsewhere = a !== b && a.jobId === b.jobId && a.worker !== b.worker;
      if (sameJobElsewhere && a.startAt <= b.startAt && b.startAt < (a.endAt ?? Number.POSITIVE_INFINITY))
        n++;
    }
  }
  return n;
}

const stats = { runs: 0, stale: 0, handlers: 0, overlaps: 0 };

afterEach(() => {
  // The scenarios exercised what they are meant to: lapsed leases, overlaps and stale settlements.
  if (process.env.LEASE_STATS) console.log(JSON.stringify(stats)); // to see what the runs covered

  if (stats.runs > 0) {
    expect(stats.stale).toBeGreaterThan(0);
    expect(stats.overlaps).toBeGreaterThan(0);
  }
  Object.assign(stats, { runs: 0, stale: 0, handlers: 0, overlaps: 0 });
});

// Each property gets a time budget so the file stays under 30 s on a busy 2-core machine: once it is
// spent, remaining runs (and shrink attempts) return at once. Not fast-check's interruptAfterTimeLimit,
// which abandons a run mid-way, leaving it to go on in the background under fake timers.
// The budget ends the runs only once they have covered a stale settlement and an overlap (which
// afterEach requires): on a slow machine the budget may hold a handful of runs, and whether those
// happened to include both is luck, not a property of the queue.
function withinBudget(
  ms: number,
  property: (sc: Scenario) => Promise<void>,
): (sc: Scenario) => Promise<void> {
  let deadline = 0;
  return async (sc) => {
    if (deadline === 0) deadline = performance.now() + ms;
    if (performance.now() > deadline && stats.stale > 0 && stats.overlaps > 0) return;
    await property(sc);
  };
}

describe("leases", () => {
  it("no job is held by two workers at once while its lease is valid (SQLite, one connection per worker)", async () => {
    await fc.assert(
      fc.asyncProperty(
        scenarioArb,
        withinBudget(15_000, (sc) => runScenario("sqlite", sc)),
      ),
      { numRuns: 250 },
    );
  });

  it("no job is held by two workers at once while its lease is valid (shared MemoryQueue)", async () => {
    await fc.assert(
      fc.asyncProperty(
        scenarioArb,
        withinBudget(6_000, (sc) => runScenario("memory", sc)),
      ),
      { numRuns: 400 },
    );
  });
});

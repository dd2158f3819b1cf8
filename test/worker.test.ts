/**
 * Worker behaviour within one process, on both queue implementations: outcomes
 * and events, retries along the backoff, unknown types, concurrency, argument
 * checks, graceful stop and the in-process wake-up. Leases across processes are
 * tested elsewhere.
 */
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  type BackoffOptions,
  type Job,
  type JobQueue,
  MemoryQueue,
  Queue,
  UnrecoverableError,
  Worker,
  type WorkerOptions,
} from "../src/index.js";
import { workerSource } from "../src/queue/source.js";
import type { Handlers, StopOptions } from "../src/queue/worker.js";
import { openStore, type Store } from "../src/store.js";
import { deferred, invalidArgument, ManualClock, sleep, useTempDirs, waitFor } from "./helpers.js";

interface MakeOptions {
  backoff?: BackoffOptions;
  clock?: () => number;
}
interface Impl {
  name: string;
  make(options?: MakeOptions): JobQueue;
}

const DAY_MS = 86_400_000;
const tempDir = useTempDirs();
const stores: Store[] = [];
const workers: Worker[] = [];
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
  for (const s of stores.splice(0)) s.close();
});

const IMPLS: Impl[] = [
  {
    name: "Queue (SQLite file)",
    make(options) {
      const store = openStore(join(tempDir(), "worker.db"));
      stores.push(store);
      return new Queue(store, "default", options);
    },
  },
  { name: "MemoryQueue", make: (options) => new MemoryQueue("default", options) },
];

function worker(queue: JobQueue, handlers: Handlers, options: WorkerOptions = {}): Worker {
  const w = new Worker(queue, handlers, { pollIntervalMs: 5, ...options });
  workers.push(w);
  return w;
}

type FailedArgs = [job: Job, error: Error, final: boolean];

/** Resolves with the arguments of the worker's next `event`. */
function next<A extends unknown[]>(w: Worker, event: string, timeoutMs = 5_000): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "${event}" event within ${timeoutMs} ms`)),
      timeoutMs,
    );
    w.once(event, (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args as A);
    });
  });
}

describe.each(IMPLS)("Worker on $name", (impl) => {
  it("runs a job's handler, writes the completion, then emits completed", async () => {
    const q = impl.make();
    const job = q.add("greet", { name: "ada" });
    const seen: Job[] = [];
    const w = worker(q, {
      greet: async (j: Job<{ name: string }>) => {
        seen.push(j);
      },
    });
    let stateAtEvent: string | undefined;
    const done = next<[Job]>(w, "completed");
    w.on("completed", (j: Job) => {
      stateAtEvent = q.get(j.id)?.state;
    });
    w.start();
    const [completed] = await done;
    expect(completed.id).toBe(job.id);
    expect(stateAtEvent).toBe("completed");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ id: job.id, payload: { name: "ada" }, state: "running", attempts: 1 });
    expect(q.get(job.id)).toMatchObject({
      state: "completed",
      attempts: 1,
      lastError: null,
      leaseOwner: null,
    });
    expect(q.get(job.id)!.finishedAt).not.toBeNull();
  });

  it("retries a failing job along the backoff and stops at maxAttempts with the last error kept", async () => {
    const clock = new ManualClock();
    const base = 1000;
    const factor = 3;
    const q = impl.make({ clock: clock.now, backoff: { baseMs: base, factor, jitter: 0, maxMs: 60_000 } });
    const job = q.add("flaky", null, { maxAttempts: 3 });
    let calls = 0;
    const w = worker(
      q,
      {
        flaky: (j: Job) => {
          calls++;
          throw new Error(`boom on attempt ${j.attempts}`);
        },
      },
      { leaseMs: 600_000 },
    );

    let failed = next<FailedArgs>(w, "failed");
    w.start();
    const t1 = clock.t;
    let [failedJob, error, final] = await failed;
    expect(failedJob.id).toBe(job.id);
    expect(error.message).toBe("boom on attempt 1");
    expect(final).toBe(false);
    expect(q.get(job.id)).toMatchObject({
      state: "pending",
      attempts: 1,
      lastError: "boom on attempt 1",
      runAt: t1 + base, // first retry: base
    });

    // Not due yet: many polls go by without a second attempt.
    await sleep(40);
    expect(calls).toBe(1);

    failed = next<FailedArgs>(w, "failed");
    const t2 = clock.advance(base);
    [, error, final] = await failed;
    expect(final).toBe(false);
    expect(q.get(job.id)).toMatchObject({
      state: "pending",
      attempts: 2,
      lastError: "boom on attempt 2",
      runAt: t2 + base * factor, // second retry: base * factor
    });

    clock.advance(base * factor - 1);
    await sleep(40);
    expect(calls).toBe(2);

    failed = next<FailedArgs>(w, "failed");
    const t3 = clock.advance(1);
    [, error, final] = await failed;
    expect(final).toBe(true);
    expect(error.message).toBe("boom on attempt 3");
    expect(q.get(job.id)).toMatchObject({
      state: "failed",
      attempts: 3,
      lastError: "boom on attempt 3",
      finishedAt: t3,
    });
    clock.advance(DAY_MS);
    await sleep(30);
    expect(calls).toBe(3);
  });

  it("fails a job at once on UnrecoverableError", async () => {
    const q = impl.make();
    const job = q.add("doomed", null, { maxAttempts: 5 });
    let calls = 0;
    const w = worker(q, {
      doomed: () => {
        calls++;
        throw new UnrecoverableError("bad payload, retrying will not help");
      },
    });
    const failed = next<FailedArgs>(w, "failed");
    w.start();
    const [, error, final] = await failed;
    expect(final).toBe(true);
    expect(error.message).toBe("bad payload, retrying will not help");
    expect(q.get(job.id)).toMatchObject({
      state: "failed",
      attempts: 1,
      lastError: "bad payload, retrying will not help",
    });
    await sleep(30);
    expect(calls).toBe(1);
  });

  it("keeps the text of a thrown non-Error", async () => {
    const q = impl.make();
    const job = q.add("odd", null, { maxAttempts: 1 });
    const w = worker(q, {
      odd: () => {
        throw "plain string failure";
      },
    });
    const failed = next<FailedArgs>(w, "failed");
    w.start();
    await failed;
    expect(q.get(job.id)).toMatchObject({ state: "failed", lastError: "plain string failure" });
  });

  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const thrown: Array<[string, () => unknown, RegExp]> = [
    ["an object with no prototype", () => Object.create(null), /handler threw an object/],
    [
      "an object whose toString throws",
      () => ({
        toString() {
          throw new Error("no toString for you");
        },
      }),
      /handler threw an object/,
    ],
    ["a Symbol", () => Symbol("odd"), /handler threw Symbol\(odd\)/],
    ["undefined", () => undefined, /handler threw undefined/],
    ["null", () => null, /handler threw null/],
    ["a frozen object", () => Object.freeze({ code: 7 }), /handler threw an object \{"code":7\}/],
    [
      "an Error whose message getter throws",
      () =>
        Object.defineProperty(new Error("x"), "message", {
          get() {
            throw new Error("getter");
          },
        }),
      /^Error$/,
    ],
    [
      "an object whose getters throw",
      () => ({
        get boom() {
          throw new Error("getter");
        },
      }),
      /handler threw an object/,
    ],
    ["a revoked Proxy", () => revoked.proxy, /handler threw/],
    ["a number", () => 42, /handler threw 42/],
    ["an empty string", () => "", /handler threw an empty string/],
  ];
  it.each(thrown)(
    "turns a thrown %s into a failed attempt with a readable message",
    async (_, make, text) => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        const q = impl.make();
        const job = q.add("odd", null, { maxAttempts: 2 });
        const w = worker(q, {
          odd: async () => {
            throw make();
          },
          fine: () => {},
        });
        const failed = next<FailedArgs>(w, "failed");
        w.start();
        const [, error, final] = await failed;
        expect(final).toBe(false);
        expect(error.message).toMatch(text);
        expect(q.get(job.id)).toMatchObject({ state: "pending", attempts: 1 });
        expect(q.get(job.id)!.lastError).toMatch(text);
        // The worker (and the process) goes on.
        const completed = next<[Job]>(w, "completed");
        const fine = q.add("fine");
        expect((await completed)[0].id).toBe(fine.id);
        await sleep(20);
        expect(unhandled).toEqual([]);
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    },
  );

  it.each(["mystery", "toString", "constructor", "hasOwnProperty", "__proto__"])(
    "fails a job of unknown type %s at once with an error naming the type",
    async (type) => {
      const q = impl.make();
      const job = q.add(type, null, { maxAttempts: 3 });
      const w = worker(q, { known: () => {} });
      const failed = next<FailedArgs>(w, "failed");
      w.start();
      const [, error, final] = await failed;
      expect(final).toBe(true);
      expect(error.message).toContain(`no handler for job type "${type}"`);
      expect(q.get(job.id)).toMatchObject({ state: "failed", attempts: 1 });
      expect(q.get(job.id)!.lastError).toContain(`"${type}"`);
    },
  );

  it("with handledTypesOnly, claims only its own types and leaves the others pending", async () => {
    const q = impl.make();
    const theirs = q.add("someone-elses", { x: 1 }, { priority: 10 });
    const mine = q.add("known", { y: 2 });
    const w = worker(q, { known: () => {} }, { handledTypesOnly: true });
    const completed = next<[Job]>(w, "completed");
    w.start();
    const [job] = await completed;
    expect(job.id).toBe(mine.id);
    await sleep(30); // several polls: the other type must still be untouched
    expect(q.get(theirs.id)).toMatchObject({ state: "pending", attempts: 0, lastError: null });
    expect(q.get(mine.id)!.state).toBe("completed");
  });

  it("never runs more handlers at once than its concurrency", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 12 }),
        async (concurrency, delays) => {
          const q = impl.make();
          const ids = q.addMany(delays.map((d) => ({ type: "work", payload: d }))).map((j) => j.id);
          let running = 0;
          let peak = 0;
          const ran: number[] = [];
          const w = worker(
            q,
            {
              work: async (j: Job<number>) => {
                running++;
                peak = Math.max(peak, running);
                ran.push(j.id);
                try {
                  await sleep(j.payload);
                } finally {
                  running--;
                }
              },
            },
            { concurrency },
          );
          let completed = 0;
          w.on("completed", () => completed++);
          w.start();
          await waitFor(() => completed === ids.length, "every job to complete");
          await w.stop();
          expect(peak).toBeLessThanOrEqual(concurrency);
          // All jobs were due at once, so the worker did fill its slots.
          expect(peak).toBe(Math.min(concurrency, ids.length));
          expect([...ran].sort((a, b) => a - b)).toEqual(ids);
          expect(q.stats().completed).toBe(ids.length);
        },
      ),
      { numRuns: 8 },
    );
  });

  it("completes each of many jobs exactly once", async () => {
    const q = impl.make();
    const ids = q
      .addMany(Array.from({ length: 300 }, (_, i) => ({ type: "n", payload: i })))
      .map((j) => j.id);
    const runs = new Map<number, number>();
    const w = worker(
      q,
      { n: (j: Job) => void runs.set(j.id, (runs.get(j.id) ?? 0) + 1) },
      { concurrency: 7 },
    );
    let completed = 0;
    w.on("completed", () => completed++);
    w.start();
    await waitFor(() => completed === ids.length, "300 completions");
    await w.stop();
    expect([...runs.keys()].sort((a, b) => a - b)).toEqual(ids);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(q.stats()).toMatchObject({ completed: 300, pending: 0, running: 0, averageAttempts: 1 });
  });

  it("stop() waits for jobs in flight, writes their outcomes and hands back unstarted jobs unspent", async () => {
    const q = impl.make();
    const [first, second, third] = q.addMany([
      { type: "slow", payload: 1, options: { priority: 2 } },
      { type: "slow", payload: 2, options: { priority: 1 } },
      { type: "slow", payload: 3 },
    ]);
    const gate = deferred();
    const started = deferred<Job>();
    const calls: number[] = [];
    const w = worker(
      q,
      {
        slow: async (j: Job) => {
          calls.push(j.id);
          started.resolve(j);
          await gate.promise;
        },
      },
      { concurrency: 1 },
    );
    const completed: number[] = [];
    w.on("completed", (j: Job) => completed.push(j.id));
    w.start();
    expect((await started.promise).id).toBe(first!.id);
    // The worker claimed all three: one runs, two wait in its buffer.
    expect(q.get(second!.id)!.state).toBe("running");
    expect(q.get(third!.id)!.state).toBe("running");

    let stopped = false;
    const stopping = w.stop().then(() => {
      stopped = true;
    });
    for (const j of [second!, third!]) {
      expect(q.get(j.id)).toMatchObject({ state: "pending", attempts: 0, leaseOwner: null, startedAt: null });
    }
    await sleep(30);
    expect(stopped).toBe(false);
    expect(q.get(first!.id)!.state).toBe("running");

    gate.resolve();
    await stopping;
    expect(q.get(first!.id)).toMatchObject({ state: "completed", attempts: 1 });
    expect(completed).toEqual([first!.id]);
    expect(calls).toEqual([first!.id]);
    expect(w.isRunning).toBe(false);
    expect(w.held).toBe(0);
    // Nothing more is claimed after stop.
    await sleep(20);
    expect(q.stats()).toMatchObject({ pending: 2, running: 0, completed: 1 });
  });

  it("stop() writes a failure that happens after it was called", async () => {
    const q = impl.make();
    const job = q.add("late-fail");
    const gate = deferred();
    const started = deferred();
    const w = worker(q, {
      "late-fail": async () => {
        started.resolve();
        await gate.promise;
        throw new Error("failed while stopping");
      },
    });
    w.start();
    await started.promise;
    const stopping = w.stop();
    gate.resolve();
    await stopping;
    expect(q.get(job.id)).toMatchObject({
      state: "pending",
      attempts: 1,
      lastError: "failed while stopping",
    });
  });

  it("fails an attempt that outlives the job's timeoutMs, aborts its signal and frees its slot", async () => {
    const q = impl.make({ backoff: { baseMs: 60_000, jitter: 0 } });
    const hung = q.add("hang", null, { timeoutMs: 100, maxAttempts: 2 });
    expect(q.get(hung.id)!.timeoutMs).toBe(100);
    let signal: AbortSignal | undefined;
    const w = worker(
      q,
      {
        hang: (_job, context) => {
          signal = context.signal;
          return new Promise(() => {}); // never settles
        },
        fine: () => {},
      },
      { concurrency: 1 },
    );
    const failed = next<FailedArgs>(w, "failed");
    w.start();
    const [job, error, final] = await failed;
    expect(job.id).toBe(hung.id);
    expect(error.message).toBe("timed out after 100 ms");
    expect(final).toBe(false);
    expect(signal!.aborted).toBe(true);
    expect(String(signal!.reason)).toMatch(/timed out after 100 ms/);
    expect(q.get(hung.id)).toMatchObject({
      state: "pending",
      attempts: 1,
      lastError: "timed out after 100 ms",
    });
    // The one slot is free again though the handler never settled.
    const completed = next<[Job]>(w, "completed");
    const fine = q.add("fine");
    expect((await completed)[0].id).toBe(fine.id);
    // And stop() has no handler left to wait for.
    await w.stop();
  });

  it("takes a type's timeout from the worker, the job's own winning over it", async () => {
    const q = impl.make();
    const quick = q.add("slow", { ms: 150 }, { maxAttempts: 1 });
    const strict = q.add("slow", { ms: 150 }, { maxAttempts: 1, timeoutMs: 20 });
    const other = q.add("other", { ms: 150 }, { maxAttempts: 1 });
    const pause = (j: Job<{ ms: number }>) => sleep(j.payload.ms);
    const w = worker(
      q,
      { slow: pause, other: pause },
      { concurrency: 3, timeoutMs: 40, timeouts: { slow: 60_000 } },
    );
    w.start();
    await waitFor(
      () => [quick, strict, other].every((j) => ["completed", "failed"].includes(q.get(j.id)!.state)),
      "all three settled",
    );
    expect(q.get(quick.id)!.state).toBe("completed");
    expect(q.get(strict.id)).toMatchObject({ state: "failed", lastError: "timed out after 20 ms" });
    expect(q.get(other.id)).toMatchObject({ state: "failed", lastError: "timed out after 40 ms" });
  });

  it("stop({ timeoutMs }) returns though a handler never settles, leaving its job to lease expiry", async () => {
    const q = impl.make();
    const hung = q.add("hang");
    let signal: AbortSignal | undefined;
    const w = worker(
      q,
      {
        hang: (_job, context) => {
          signal = context.signal;
          return new Promise(() => {});
        },
      },
      { leaseMs: 300 },
    );
    w.start();
    await waitFor(() => signal !== undefined, "the handler started");
    const before = performance.now();
    await w.stop({ timeoutMs: 200 });
    expect(performance.now() - before).toBeGreaterThanOrEqual(190);
    expect(signal!.aborted).toBe(true);
    expect(w.held).toBe(0);
    // Still running, leased to the stopped worker, no longer renewed: the reaper takes it back.
    expect(q.get(hung.id)).toMatchObject({ state: "running", leaseOwner: w.id });
    await waitFor(() => {
      workerSource(q).reapExpired();
      return q.get(hung.id)!.state === "pending";
    }, "the lease to expire");
    expect(q.get(hung.id)).toMatchObject({ attempts: 1, lastError: expect.stringMatching(/lease expired/) });
  });

  it("picks up a job added in-process at once, without waiting for its poll", async () => {
    const q = impl.make();
    let failOnce = true;
    const w = worker(
      q,
      {
        ping: () => {},
        once: () => {
          if (failOnce) {
            failOnce = false;
            throw new UnrecoverableError("first run fails");
          }
        },
      },
      { pollIntervalMs: 60_000 },
    );
    w.start();
    await sleep(30); // the first claim found nothing; the next poll is a minute away
    // "At once" is measured against that minute: 20 s leaves a loaded machine room and still
    // fails a worker that waited for its poll.
    const AT_ONCE = 20_000;
    const done = next<[Job]>(w, "completed", AT_ONCE);
    const added = Date.now();
    const job = q.add("ping");
    const [completed] = await done;
    expect(completed.id).toBe(job.id);
    expect(Date.now() - added).toBeLessThan(AT_ONCE);

    // A job brought back by retry wakes it as well.
    const failed = next<FailedArgs>(w, "failed", AT_ONCE);
    const once = q.add("once");
    await failed;
    expect(q.get(once.id)!.state).toBe("failed");
    await sleep(20);
    const again = next<[Job]>(w, "completed", AT_ONCE);
    expect(q.retry(once.id)).toBe(true);
    expect((await again)[0].id).toBe(once.id);
  });

  it("drops the outcome of a job cancelled while it ran", async () => {
    const q = impl.make();
    const job = q.add("long");
    const gate = deferred();
    const started = deferred();
    const w = worker(q, {
      long: async () => {
        started.resolve();
        await gate.promise;
      },
    });
    const completed: Job[] = [];
    w.on("completed", (j: Job) => completed.push(j));
    const stale = next<[Job]>(w, "stale");
    w.start();
    await started.promise;
    expect(q.cancel(job.id)).toBe(true);
    gate.resolve();
    const [dropped] = await stale;
    expect(dropped.id).toBe(job.id);
    expect(completed).toEqual([]);
    expect(q.get(job.id)!.state).toBe("cancelled");
  });

  it("aborts the signal of a running job once it is cancelled, and only of that job", async () => {
    const q = impl.make();
    const victim = q.add("long", { n: 1 });
    const bystander = q.add("long", { n: 2 });
    const signals = new Map<number, AbortSignal>();
    const release = deferred();
    const w = worker(
      q,
      {
        long: async (job, { signal }) => {
          signals.set(job.id, signal);
          await release.promise;
        },
      },
      // Renewals every ~100 ms: the worker learns of the cancel at the next one.
      { leaseMs: 300, concurrency: 2 },
    );
    w.start();
    await waitFor(() => signals.size === 2, "both jobs running");
    expect(q.cancel(victim.id)).toBe(true);
    await waitFor(() => signals.get(victim.id)!.aborted, "the cancelled job's signal aborted", {
      timeoutMs: 10_000,
    });
    expect(String(signals.get(victim.id)!.reason)).toMatch(/no longer leased/);
    expect(signals.get(bystander.id)!.aborted).toBe(false);
    release.resolve();
    await waitFor(() => q.get(bystander.id)!.state === "completed", "the other job completed");
    expect(q.get(victim.id)!.state).toBe("cancelled");
  });
});

describe("Worker arguments", () => {
  const q = () => new MemoryQueue();
  const cases: Array<[string, () => unknown]> = [
    ["concurrency", () => new Worker(q(), {}, { concurrency: 0 })],
    ["concurrency", () => new Worker(q(), {}, { concurrency: -2 })],
    ["concurrency", () => new Worker(q(), {}, { concurrency: 1.5 })],
    ["concurrency", () => new Worker(q(), {}, { concurrency: Number.NaN })],
    ["concurrency", () => new Worker(q(), {}, { concurrency: "4" as unknown as number })],
    ["pollIntervalMs", () => new Worker(q(), {}, { pollIntervalMs: 0 })],
    ["leaseMs", () => new Worker(q(), {}, { leaseMs: -1 })],
    ["batchSize", () => new Worker(q(), {}, { batchSize: 0 })],
    ["timeoutMs", () => new Worker(q(), {}, { timeoutMs: 0 })],
    ["timeoutMs", () => new Worker(q(), {}, { timeoutMs: 2 ** 31 })],
    ["timeouts.send", () => new Worker(q(), {}, { timeouts: { send: -5 } })],
    ["timeouts", () => new Worker(q(), {}, { timeouts: 5 as unknown as Record<string, number> })],
    ["timeoutMs", () => new Worker(q(), {}).stop({ timeoutMs: Number.NaN })],
    ["options", () => new Worker(q(), {}, null as unknown as WorkerOptions)],
    ["options", () => new Worker(q(), {}).stop(null as unknown as StopOptions)],
    ["handlers", () => new Worker(q(), null as unknown as Handlers)],
    ["handlers.send", () => new Worker(q(), { send: "not a function" as unknown as () => void })],
    ["handlers.other", () => new Worker(q(), { ok: () => {}, other: undefined as unknown as () => void })],
  ];
  it.each(cases)("refuses a bad %s, naming it", (argument, make) => {
    const err = invalidArgument(make);
    expect(err.argument).toBe(argument);
    expect(err.message).toContain(argument);
  });
});

describe("the queue a Worker is given", () => {
  it("must be a Queue or a MemoryQueue: anything else is refused at construction", () => {
    const notAQueue = { ...new MemoryQueue("x") } as unknown as MemoryQueue;
    expect(invalidArgument(() => new Worker(notAQueue, {})).argument).toBe("queue");
  });
});

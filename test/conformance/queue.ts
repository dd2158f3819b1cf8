/**
 * Contract: the queue conformance suite (River-style), written once and run
 * over every implementation in test/conformance/queue-impls.ts so they are
 * proven to behave the same: `queueSuite` is every behaviour on one queue,
 * `queuesAgree` a differential property of each queue against the first.
 * Time is a manual clock passed as the queue's `clock` option.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BackoffOptions,
  JOB_STATES,
  type Job,
  type JobQueue,
  type JobState,
  type ListOptions,
  type Settlement,
} from "../../src/index.js";
import { invalidArgument, ManualClock } from "../helpers.js";
import type { QueueImpl } from "./queue-impls.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const OWNER = "test-owner";

/** The order claims must follow: priority high first, then due time, then id. */
const claimOrder = (a: Job, b: Job) => b.priority - a.priority || a.runAt - b.runAt || a.id - b.id;

function claimOne(q: JobQueue, leaseMs = 30_000): Job {
  const [job] = q.claim(OWNER, 1, leaseMs);
  if (!job) throw new Error("nothing to claim");
  return job;
}

function complete(q: JobQueue, job: Job): void {
  expect(q.settle(OWNER, [{ job, ok: true }]).applied).toHaveLength(1);
}

function failFinal(q: JobQueue, job: Job, error = "boom"): void {
  expect(q.settle(OWNER, [{ job, ok: false, error, retry: false }]).applied).toHaveLength(1);
}

/** Every behaviour of a queue, on one implementation. */
export function queueSuite(impl: QueueImpl): void {
  describe(impl.name, () => {
    function setup(options: { backoff?: BackoffOptions } = {}) {
      const clock = new ManualClock();
      const q = impl.make({ ...options, clock: clock.now });
      return { q, clock };
    }

    describe("add and addMany", () => {
      it("return pending jobs with the defaults", () => {
        const { q, clock } = setup();
        const job = q.add("email", { to: "ada" });
        expect(job).toMatchObject({
          queue: q.name,
          type: "email",
          payload: { to: "ada" },
          state: "pending",
          priority: 0,
          maxAttempts: 3,
          attempts: 0,
          runAt: clock.t,
          createdAt: clock.t,
          key: null,
          lastError: null,
          leaseOwner: null,
          leaseExpiresAt: null,
          startedAt: null,
          finishedAt: null,
        });
        expect(Number.isInteger(job.id) && job.id > 0).toBe(true);
        expect(q.get(job.id)).toEqual(job);
      });

      it("keep the options given", () => {
        const { q, clock } = setup();
        const job = q.add("x", null, {
          priority: -7,
          maxAttempts: 9,
          key: "k1",
          delayMs: 250,
          backoff: { baseMs: 5 },
        });
        expect(job).toMatchObject({ priority: -7, maxAttempts: 9, key: "k1", runAt: clock.t + 250 });
        expect(job.backoff).toEqual({ baseMs: 5 });
        expect(q.get(job.id)).toEqual(job);
      });

      it("return the job as it was stored, whatever JSON made of the payload", () => {
        const { q } = setup();
        const payloads: unknown[] = [
          undefined,
          null,
          0,
          "text with ünïcødé ✓",
          [1, [2, [3]], { a: null }],
          { at: new Date(0), nested: { skip: undefined, keep: true } },
          // A Map, a Set or a class instance would come back as {} or a bag of fields: refused (see "bad input").
        ];
        for (const payload of payloads) {
          const job = q.add("p", payload);
          const stored = q.get(job.id)!;
          expect(job).toEqual(stored);
          expect(stored.payload).toEqual(JSON.parse(JSON.stringify(payload ?? null)));
        }
      });

      it("hand out copies: changing a returned job changes nothing stored", () => {
        const { q } = setup();
        const job = q.add("p", { list: [1, 2], inner: { n: 1 } });
        (job.payload as { list: number[] }).list.push(3);
        const got = q.get(job.id)!;
        (got.payload as { inner: { n: number } }).inner.n = 99;
        got.state = "completed";
        const [claimed] = q.claim(OWNER, 1, 1000);
        (claimed!.payload as { list: number[] }).list.length = 0;
        expect(q.get(job.id)!.payload).toEqual({ list: [1, 2], inner: { n: 1 } });
        expect(q.get(job.id)!.state).toBe("running");
      });

      it("addMany keeps the items' order and their own options", () => {
        const { q, clock } = setup();
        const jobs = q.addMany([
          { type: "a", payload: 1 },
          { type: "b", payload: { two: 2 }, options: { priority: 5, maxAttempts: 1 } },
          { type: "c", options: { delayMs: 1000 } },
        ]);
        expect(jobs.map((j) => j.type)).toEqual(["a", "b", "c"]);
        expect(jobs[0]).toMatchObject({ payload: 1, priority: 0, maxAttempts: 3, runAt: clock.t });
        expect(jobs[1]).toMatchObject({ payload: { two: 2 }, priority: 5, maxAttempts: 1 });
        expect(jobs[2]).toMatchObject({ payload: null, runAt: clock.t + 1000 });
        expect(jobs[0]!.id).toBeLessThan(jobs[1]!.id);
        expect(jobs[1]!.id).toBeLessThan(jobs[2]!.id);
        for (const j of jobs) expect(q.get(j.id)).toEqual(j);
        expect(q.addMany([])).toEqual([]);
        expect(q.stats().total).toBe(3);
      });

      it("addMany of many rows stores every one with its own values", () => {
        const { q } = setup();
        const items = Array.from({ length: 250 }, (_, i) => ({
          type: `t${i % 3}`,
          payload: { i },
          options: { priority: i % 5, ...(i % 7 === 0 ? { key: `k${i}` } : {}) },
        }));
        const jobs = q.addMany(items);
        expect(jobs).toHaveLength(250);
        expect(new Set(jobs.map((j) => j.id)).size).toBe(250);
        jobs.forEach((j, i) => {
          expect(j).toMatchObject({ type: `t${i % 3}`, payload: { i }, priority: i % 5 });
          expect(q.get(j.id)).toEqual(j);
        });
      });
    });

    describe("claim order and due time", () => {
      it("claims higher priority first, then earlier runAt, then lower id", () => {
        const { q, clock } = setup();
        const t0 = clock.t;
        const a = q.add("a", null, { priority: 0 });
        const b = q.add("b", null, { priority: 5, runAt: t0 - 10 });
        const c = q.add("c", null, { priority: 5, runAt: t0 - 20 });
        const d = q.add("d", null, { priority: -1 });
        const e = q.add("e", null, { priority: 0 });
        const f = q.add("f", null, { priority: 5, runAt: t0 - 20 });
        const claimed = [...q.claim(OWNER, 2, 1000), ...q.claim(OWNER, 10, 1000)];
        expect(claimed.map((j) => j.id)).toEqual([c.id, f.id, b.id, a.id, e.id, d.id]);
      });

      it("claims take a lease and spend an attempt", () => {
        const { q, clock } = setup();
        q.add("a");
        const job = claimOne(q, 5000);
        expect(job).toMatchObject({
          state: "running",
          attempts: 1,
          leaseOwner: OWNER,
          leaseExpiresAt: clock.t + 5000,
          startedAt: clock.t,
        });
        expect(q.get(job.id)).toEqual(job);
        expect(q.claim(OWNER, 10, 5000)).toEqual([]);
      });

      it("does not hand out a delayed job before its time", () => {
        const { q, clock } = setup();
        const t0 = clock.t;
        const delayed = q.add("later", null, { delayMs: 1000 });
        const dated = q.add("dated", null, { runAt: new Date(t0 + 2000) });
        const epoch = q.add("epoch", null, { runAt: t0 + 3000 });
        expect(delayed.runAt).toBe(t0 + 1000);
        expect(dated.runAt).toBe(t0 + 2000);
        expect(q.claim(OWNER, 10, 1000)).toEqual([]);
        clock.advance(999);
        expect(q.claim(OWNER, 10, 1000)).toEqual([]);
        clock.advance(1);
        expect(q.claim(OWNER, 10, 1000).map((j) => j.id)).toEqual([delayed.id]);
        clock.advance(1500);
        expect(q.claim(OWNER, 10, 1000).map((j) => j.id)).toEqual([dated.id]);
        clock.advance(500);
        expect(q.claim(OWNER, 10, 1000).map((j) => j.id)).toEqual([epoch.id]);
      });

      it("for any jobs, claims follow (priority desc, runAt, id) over the due ones only", () => {
        const addOptions = fc.record(
          {
            priority: fc.integer({ min: -3, max: 3 }),
            delayMs: fc.integer({ min: 0, max: 2000 }),
            runAtOffset: fc.integer({ min: -2000, max: 2000 }),
            useRunAt: fc.boolean(),
          },
          { requiredKeys: ["useRunAt"] },
        );
        fc.assert(
          fc.property(
            fc.array(addOptions, { minLength: 1, maxLength: 25 }),
            fc.integer({ min: 0, max: 2500 }),
            fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }),
            (specs, advance, batches) => {
              const { q, clock } = setup();
              const t0 = clock.t;
              const added = specs.map((s, i) =>
                q.add(
                  `t${i}`,
                  { i },
                  {
                    priority: s.priority,
                    ...(s.useRunAt
                      ? s.runAtOffset === undefined
                        ? {}
                        : { runAt: t0 + s.runAtOffset }
                      : s.delayMs === undefined
                        ? {}
                        : { delayMs: s.delayMs }),
                  },
                ),
              );
              clock.advance(advance);
              const due = added.filter((j) => j.runAt <= clock.t).sort(claimOrder);
              const claimed: Job[] = [];
              for (const n of batches) {
                const batch = q.claim(OWNER, n, 60_000);
                expect(batch.length).toBeLessThanOrEqual(n);
                claimed.push(...batch);
              }
              const expected = due.slice(0, claimed.length).map((j) => j.id);
              expect(claimed.map((j) => j.id)).toEqual(expected);
              // Every batch was full until the due jobs ran out.
              const total = batches.reduce((s, n) => s + n, 0);
              expect(claimed.length).toBe(Math.min(total, due.length));
            },
          ),
          { numRuns: impl.propertyRuns },
        );
      });
    });

    describe("dedup key", () => {
      it("returns the existing unfinished job, pending or running", () => {
        const { q } = setup();
        const first = q.add("sync", { v: 1 }, { key: "bucket-a" });
        const again = q.add("sync", { v: 2 }, { key: "bucket-a", priority: 9 });
        expect(again.id).toBe(first.id);
        expect(again.payload).toEqual({ v: 1 });
        expect(q.add("sync", null, { key: "bucket-b" }).id).not.toBe(first.id);
        claimOne(q);
        const whileRunning = q.add("sync", { v: 3 }, { key: "bucket-a" });
        expect(whileRunning.id).toBe(first.id);
        expect(whileRunning.state).toBe("running");
        expect(q.stats().total).toBe(2);
      });

      it("is free again once the job finishes", () => {
        const { q } = setup();
        const first = q.add("sync", null, { key: "k" });
        complete(q, claimOne(q));
        const second = q.add("sync", null, { key: "k" });
        expect(second.id).not.toBe(first.id);
        expect(second.state).toBe("pending");
        expect(q.cancel(second.id)).toBe(true);
        const third = q.add("sync", null, { key: "k" });
        expect(new Set([first.id, second.id, third.id]).size).toBe(3);
      });

      it("dedups within one addMany batch", () => {
        const { q } = setup();
        const jobs = q.addMany([
          { type: "a", options: { key: "same" } },
          { type: "b" },
          { type: "a", options: { key: "same" } },
        ]);
        expect(jobs[2]!.id).toBe(jobs[0]!.id);
        expect(q.stats().total).toBe(2);
      });

      it("never lets two unfinished jobs share a key through moveToState or retry", () => {
        const { q } = setup();
        const old = q.add("a", null, { key: "k" });
        failFinal(q, claimOne(q));
        const current = q.add("a", null, { key: "k" });
        expect(current.id).not.toBe(old.id);
        // Bringing the old job back would make two unfinished jobs with key k.
        expect(q.retry(old.id)).toBe(false);
        expect(q.moveToState(old.id, "pending")).toBe(false);
        expect(q.get(old.id)!.state).toBe("failed");
        const unfinished = q.list({ state: "pending" }).filter((j) => j.key === "k");
        expect(unfinished.map((j) => j.id)).toEqual([current.id]);
        // Once the key is free again, the old job may come back.
        expect(q.cancel(current.id)).toBe(true);
        expect(q.retry(old.id)).toBe(true);
      });
    });

    describe("ids", () => {
      it("are never reused, even after cleanup removed the newest job", () => {
        const { q, clock } = setup();
        q.add("a");
        const newest = q.add("b");
        q.cancel(newest.id);
        clock.advance(1);
        expect(q.cleanup({ olderThanMs: 0 })).toBe(1);
        expect(q.add("c").id).toBeGreaterThan(newest.id);
      });
    });

    describe("get and list", () => {
      function fill(q: JobQueue, clock: ManualClock) {
        const t0 = clock.t;
        const specs: Array<[string, number, number]> = [
          ["a", 1, 50],
          ["b", 3, 10],
          ["a", 3, 30],
          ["c", -2, 0],
          ["b", 0, 40],
          ["a", 1, 20],
        ];
        return specs.map(([type, priority, delay]) => q.add(type, null, { priority, runAt: t0 + delay }));
      }

      it("get returns undefined for an unknown id and refuses a bad one", () => {
        const { q } = setup();
        expect(q.get(12345)).toBeUndefined();
        expect(invalidArgument(() => q.get(0)).argument).toBe("id");
        expect(invalidArgument(() => q.get(1.5)).argument).toBe("id");
      });

      it("filters by state and type", () => {
        const { q, clock } = setup();
        const jobs = fill(q, clock);
        clock.advance(100);
        const running = claimOne(q); // b, priority 3, runAt +10
        expect(running.id).toBe(jobs[1]!.id);
        q.cancel(jobs[0]!.id);
        expect(q.list({ state: "running" }).map((j) => j.id)).toEqual([jobs[1]!.id]);
        expect(q.list({ state: "cancelled" }).map((j) => j.id)).toEqual([jobs[0]!.id]);
        expect(q.list({ type: "a" }).map((j) => j.id)).toEqual([jobs[0]!.id, jobs[2]!.id, jobs[5]!.id]);
        expect(q.list({ type: "a", state: "pending" }).map((j) => j.id)).toEqual([jobs[2]!.id, jobs[5]!.id]);
        expect(q.list({ state: "completed" })).toEqual([]);
        expect(q.list({ type: "nope" })).toEqual([]);
        expect(q.list()).toHaveLength(6);
      });

      it("sorts by created, priority or runAt, either way, ties by id in the same direction", () => {
        const { q, clock } = setup();
        const jobs = fill(q, clock);
        const ids = (o: ListOptions) => q.list(o).map((j) => j.id);
        const byId = jobs.map((j) => j.id);
        expect(ids({})).toEqual(byId);
        expect(ids({ sortBy: "created", order: "desc" })).toEqual([...byId].reverse());
        const idOf = (i: number) => jobs[i]!.id;
        expect(ids({ sortBy: "priority" })).toEqual([idOf(3), idOf(4), idOf(0), idOf(5), idOf(1), idOf(2)]);
        expect(ids({ sortBy: "priority", order: "desc" })).toEqual([
          idOf(2),
          idOf(1),
          idOf(5),
          idOf(0),
          idOf(4),
          idOf(3),
        ]);
        expect(ids({ sortBy: "runAt" })).toEqual([idOf(3), idOf(1), idOf(5), idOf(2), idOf(4), idOf(0)]);
        expect(ids({ sortBy: "runAt", order: "desc" })).toEqual([
          idOf(0),
          idOf(4),
          idOf(2),
          idOf(5),
          idOf(1),
          idOf(3),
        ]);
      });

      it("pages with limit and offset, 100 by default", () => {
        const { q } = setup();
        q.addMany(Array.from({ length: 130 }, (_, i) => ({ type: "t", payload: i })));
        expect(q.list()).toHaveLength(100);
        const all = q.list({ limit: 1000 });
        expect(all).toHaveLength(130);
        const pages: Job[] = [];
        for (let offset = 0; offset < 140; offset += 30) pages.push(...q.list({ limit: 30, offset }));
        expect(pages).toEqual(all);
        expect(q.list({ offset: 130 })).toEqual([]);
        expect(q.list({ limit: 1, offset: 129 })[0]!.payload).toBe(129);
      });

      it("for any jobs and any sort, pages concatenate to the sorted list", () => {
        fc.assert(
          fc.property(
            fc.array(fc.record({ priority: fc.integer({ min: -2, max: 2 }), delay: fc.nat(5) }), {
              maxLength: 20,
            }),
            fc.constantFrom("created", "priority", "runAt" as const),
            fc.constantFrom("asc", "desc" as const),
            fc.integer({ min: 1, max: 7 }),
            (specs, sortBy, order, limit) => {
              const { q } = setup();
              const added = specs.map((s) => q.add("t", null, { priority: s.priority, delayMs: s.delay }));
              const key = (j: Job) =>
                sortBy === "created" ? j.id : sortBy === "priority" ? j.priority : j.runAt;
              const dir = order === "asc" ? 1 : -1;
              const expected = [...added]
                .sort((a, b) => dir * (key(a) - key(b) || a.id - b.id))
                .map((j) => j.id);
              const paged: number[] = [];
              for (let offset = 0; offset <= added.length; offset += limit) {
                paged.push(...q.list({ sortBy, order, limit, offset }).map((j) => j.id));
              }
              expect(paged).toEqual(expected);
            },
          ),
          { numRuns: impl.propertyRuns },
        );
      });
    });

    describe("moveToState, retry and cancel", () => {
      it("moves a job and reports whether it moved", () => {
        const { q, clock } = setup();
        const job = q.add("a");
        expect(q.moveToState(job.id, "cancelled")).toBe(true);
        expect(q.get(job.id)).toMatchObject({ state: "cancelled", finishedAt: clock.t });
        expect(q.moveToState(job.id, "cancelled")).toBe(false); // already there
        clock.advance(1000);
        expect(q.moveToState(job.id, "pending")).toBe(true);
        const back = q.get(job.id)!;
        expect(back).toMatchObject({ state: "pending", finishedAt: null });
        expect(back.runAt).toBeGreaterThanOrEqual(clock.t);
        expect(q.claim(OWNER, 1, 1000).map((j) => j.id)).toEqual([job.id]);
        expect(q.moveToState(987654, "completed")).toBe(false);
      });

      it("moves only from the states named in `from`", () => {
        const { q } = setup();
        const job = q.add("a");
        expect(q.moveToState(job.id, "completed", { from: "running" })).toBe(false);
        expect(q.get(job.id)!.state).toBe("pending");
        expect(q.moveToState(job.id, "completed", { from: ["failed", "cancelled"] })).toBe(false);
        expect(q.get(job.id)!.state).toBe("pending");
        claimOne(q);
        expect(q.moveToState(job.id, "failed", { from: ["pending", "running"] })).toBe(true);
        expect(q.get(job.id)).toMatchObject({ state: "failed", leaseOwner: null, leaseExpiresAt: null });
        // Exactly one of two racing moves from the same state wins.
        expect(q.moveToState(job.id, "pending", { from: "failed" })).toBe(true);
        expect(q.moveToState(job.id, "cancelled", { from: "failed" })).toBe(false);
        expect(q.get(job.id)!.state).toBe("pending");
      });

      it("refuses `running` and unknown states, writing nothing", () => {
        const { q } = setup();
        const job = q.add("a");
        expect(invalidArgument(() => q.moveToState(job.id, "running")).argument).toBe("to");
        expect(invalidArgument(() => q.moveToState(job.id, "done" as JobState)).argument).toBe("to");
        expect(
          invalidArgument(() => q.moveToState(job.id, "cancelled", { from: "nope" as JobState })).argument,
        ).toBe("from");
        expect(invalidArgument(() => q.moveToState(job.id, "cancelled", { from: [] })).argument).toBe("from");
        expect(
          invalidArgument(() => q.moveToState(job.id, "cancelled", { from: ["pending", "x" as JobState] }))
            .argument,
        ).toBe("from");
        expect(invalidArgument(() => q.moveToState(-1, "cancelled")).argument).toBe("id");
        expect(q.get(job.id)!.state).toBe("pending");
      });

      it("retry brings back a failed or cancelled job with fresh attempts", () => {
        const { q, clock } = setup();
        const job = q.add("a", null, { maxAttempts: 1 });
        const claimed = claimOne(q);
        failFinal(q, claimed, "broke");
        expect(q.get(job.id)).toMatchObject({ state: "failed", attempts: 1, lastError: "broke" });
        clock.advance(5000);
        expect(q.retry(job.id)).toBe(true);
        expect(q.get(job.id)).toMatchObject({
          state: "pending",
          attempts: 0,
          finishedAt: null,
          runAt: clock.t,
        });
        expect(q.retry(job.id)).toBe(false); // pending: nothing to retry
        const again = claimOne(q);
        expect(again).toMatchObject({ id: job.id, attempts: 1 });
        complete(q, again);
        expect(q.retry(job.id)).toBe(false); // completed jobs are not retried
        const other = q.add("b");
        q.cancel(other.id);
        expect(q.retry(other.id)).toBe(true);
        expect(q.retry(424242)).toBe(false);
      });

      it("cancel stops pending and running jobs, and a cancelled job's late outcome is dropped", () => {
        const { q, clock } = setup();
        const pending = q.add("a");
        const running = q.add("b", null, { priority: 1 });
        const held = claimOne(q);
        expect(held.id).toBe(running.id);
        expect(q.cancel(pending.id)).toBe(true);
        expect(q.cancel(running.id)).toBe(true);
        expect(q.get(running.id)).toMatchObject({
          state: "cancelled",
          finishedAt: clock.t,
          leaseOwner: null,
        });
        const result = q.settle(OWNER, [{ job: held, ok: true }]);
        expect(result.applied).toEqual([]);
        expect(result.stale).toHaveLength(1);
        expect(q.get(running.id)!.state).toBe("cancelled");
        expect(q.cancel(pending.id)).toBe(false);
        const done = q.add("c");
        complete(q, claimOne(q));
        expect(q.cancel(done.id)).toBe(false);
        expect(q.get(done.id)!.state).toBe("completed");
      });
    });

    describe("settle, stats, stuck and cleanup", () => {
      it("retries a failed attempt after the backoff and fails it for good at maxAttempts", () => {
        const { q, clock } = setup({ backoff: { baseMs: 100, factor: 3, jitter: 0 } });
        const job = q.add("a", null, { maxAttempts: 3 });
        const settle = (s: { ok: false; error: string; retry: boolean }, j: Job) =>
          q.settle(OWNER, [{ job: j, ...s }]);
        const t1 = clock.t;
        expect(settle({ ok: false, error: "e1", retry: true }, claimOne(q)).applied[0]!.final).toBe(false);
        expect(q.get(job.id)).toMatchObject({
          state: "pending",
          attempts: 1,
          lastError: "e1",
          runAt: t1 + 100,
        });
        clock.advance(99);
        expect(q.claim(OWNER, 1, 1000)).toEqual([]);
        clock.advance(1);
        const t2 = clock.t;
        settle({ ok: false, error: "e2", retry: true }, claimOne(q));
        expect(q.get(job.id)).toMatchObject({
          state: "pending",
          attempts: 2,
          lastError: "e2",
          runAt: t2 + 300,
        });
        clock.advance(300);
        const last = settle({ ok: false, error: "e3", retry: true }, claimOne(q));
        expect(last.applied[0]!.final).toBe(true);
        expect(q.get(job.id)).toMatchObject({
          state: "failed",
          attempts: 3,
          lastError: "e3",
          finishedAt: clock.t,
        });
      });

      it("a job's own backoff wins over the queue's", () => {
        const { q, clock } = setup({ backoff: { baseMs: 100, jitter: 0 } });
        const job = q.add("a", null, { backoff: { baseMs: 7000 } });
        const t = clock.t;
        q.settle(OWNER, [{ job: claimOne(q), ok: false, error: "x", retry: true }]);
        expect(q.get(job.id)!.runAt).toBe(t + 7000);
      });

      it("settles only while the lease holds for the same owner and attempt", () => {
        const { q } = setup();
        q.add("a");
        const held = claimOne(q);
        const other = q.settle("someone-else", [{ job: held, ok: true }]);
        expect(other.stale).toHaveLength(1);
        expect(q.get(held.id)!.state).toBe("running");
        expect(q.settle(OWNER, [{ job: { ...held, attempts: 2 }, ok: true }]).stale).toHaveLength(1);
        complete(q, held);
        expect(q.settle(OWNER, [{ job: held, ok: true }]).stale).toHaveLength(1);
      });

      it("release returns unstarted jobs without spending their attempt", () => {
        const { q } = setup();
        q.addMany([{ type: "a" }, { type: "b" }]);
        const held = q.claim(OWNER, 2, 1000);
        expect(q.release(OWNER, held)).toBe(2);
        for (const j of held) {
          expect(q.get(j.id)).toMatchObject({
            state: "pending",
            attempts: 0,
            leaseOwner: null,
            startedAt: null,
          });
        }
        expect(q.release(OWNER, held)).toBe(0);
      });

      it("stats counts per state, attempts per state, average attempts and the oldest due pending job's age", () => {
        const { q, clock } = setup();
        expect(q.stats()).toEqual({
          pending: 0,
          running: 0,
          completed: 0,
          failed: 0,
          cancelled: 0,
          total: 0,
          averageAttempts: 0,
          oldestPendingAgeMs: 0,
          attempts: { pending: 0, running: 0, completed: 0, failed: 0, cancelled: 0 },
        });
        const t0 = clock.t;
        q.add("done", null, { priority: 9 });
        q.add("broken", null, { priority: 8 });
        q.add("busy", null, { priority: 7 });
        const waiting = q.add("waiting");
        q.add("future", null, { delayMs: 60_000 });
        const gone = q.add("gone", null, { delayMs: 60_000 });
        clock.advance(1000);
        complete(q, claimOne(q));
        failFinal(q, claimOne(q));
        claimOne(q);
        q.cancel(gone.id);
        clock.advance(500);
        const s = q.stats();
        expect(s).toEqual({
          pending: 2,
          running: 1,
          completed: 1,
          failed: 1,
          cancelled: 1,
          total: 6,
          averageAttempts: 3 / 6,
          oldestPendingAgeMs: clock.t - t0,
          // The failed job spent its one attempt; the cancelled one never started.
          attempts: { pending: 0, running: 1, completed: 1, failed: 1, cancelled: 0 },
        });
        expect(waiting.runAt).toBe(t0);
        // A pending job that is not yet due has not waited at all.
        q.cancel(waiting.id);
        expect(q.stats().oldestPendingAgeMs).toBe(0);
      });

      it("stuck lists running jobs past their lease and due jobs waiting too long", () => {
        const { q, clock } = setup();
        const old = q.add("old", null, { priority: 1 });
        q.add("fresh", null, { delayMs: 9_000 });
        const held = q.add("held", null, { priority: 5 });
        expect(claimOne(q, 2000).id).toBe(held.id);
        expect(q.stuck()).toEqual([]);
        clock.advance(2001);
        expect(q.stuck().map((j) => j.id)).toEqual([held.id]);
        clock.advance(10_000);
        expect(q.stuck({ pendingForMs: 10_000 }).map((j) => j.id)).toEqual([old.id, held.id]);
        expect(q.stuck({ pendingForMs: 3_000 }).map((j) => j.type)).toEqual(["old", "fresh", "held"]);
        expect(invalidArgument(() => q.stuck({ pendingForMs: Number.NaN })).argument).toBe("pendingForMs");
      });

      it("stuck lists a job running longer than olderThanMs even while its lease is renewed", () => {
        const { q, clock } = setup();
        const long = q.add("long");
        const waiting = q.add("waiting", null, { delayMs: 1_000 });
        expect(claimOne(q, 2_000).id).toBe(long.id);
        for (let i = 0; i < 10; i++) {
          clock.advance(1_000);
          expect(q.extendLeases(OWNER, 2_000)).toEqual([long.id]);
        }
        expect(q.stuck()).toEqual([]);
        expect(q.stuck({ olderThanMs: 10_001 })).toEqual([]);
        const [stuck] = q.stuck({ olderThanMs: 9_999, pendingForMs: 60_000 });
        expect(stuck).toMatchObject({ id: long.id, state: "running", startedAt: clock.t - 10_000 });
        expect(q.stuck({ olderThanMs: 9_999 }).map((j) => j.id)).toEqual([long.id]);
        // pendingForMs defaults to olderThanMs: the due job has waited 9 s.
        expect(q.stuck({ olderThanMs: 8_000 }).map((j) => j.id)).toEqual([long.id, waiting.id]);
        expect(invalidArgument(() => q.stuck({ olderThanMs: -1 })).argument).toBe("olderThanMs");
      });

      it("keeps a job's timeoutMs and refuses a bad one", () => {
        const { q } = setup();
        const job = q.add("t", null, { timeoutMs: 1_500 });
        expect(job.timeoutMs).toBe(1_500);
        expect(q.get(job.id)!.timeoutMs).toBe(1_500);
        expect(q.add("t").timeoutMs).toBeNull();
        const many = q.addMany([
          { type: "t", options: { timeoutMs: 7 } },
          { type: "t", options: { key: "k", timeoutMs: 8 } },
        ]);
        expect(many.map((j) => q.get(j.id)!.timeoutMs)).toEqual([7, 8]);
        const bulk = q.addMany(
          Array.from({ length: 100 }, (_, i) => ({ type: "b", options: { timeoutMs: i + 1 } })),
        );
        expect(q.get(bulk[99]!.id)!.timeoutMs).toBe(100);
        expect(claimOne(q).timeoutMs).toBe(1_500);
        for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 31, "5"]) {
          expect(invalidArgument(() => q.add("t", null, { timeoutMs: bad as number })).argument).toBe(
            "timeoutMs",
          );
        }
        expect(invalidArgument(() => q.addMany([{ type: "t", options: { timeoutMs: 0 } }])).argument).toBe(
          "items[0].timeoutMs",
        );
      });

      it("cleanup removes only finished jobs older than the window", () => {
        const { q, clock } = setup();
        const ids = {
          done: q.add("done", null, { priority: 3 }).id,
          failed: q.add("failed", null, { priority: 2 }).id,
          running: q.add("running", null, { priority: 1 }).id,
          pending: q.add("pending").id,
          cancelled: q.add("cancelled", null, { delayMs: 1 }).id,
        };
        complete(q, claimOne(q));
        failFinal(q, claimOne(q));
        claimOne(q, 30 * DAY);
        q.cancel(ids.cancelled);
        clock.advance(DAY);
        const recent = q.add("recent").id;
        q.cancel(recent);
        clock.advance(6 * DAY); // the first batch finished exactly 7 days ago: not older than the window yet
        expect(q.cleanup()).toBe(0);
        clock.advance(1);
        expect(q.cleanup({ states: ["failed"] })).toBe(1);
        expect(q.get(ids.failed)).toBeUndefined();
        expect(q.cleanup()).toBe(2);
        expect(q.list({ limit: 100 }).map((j) => j.id)).toEqual([ids.running, ids.pending, recent]);
        expect(q.cleanup({ olderThanMs: 0 })).toBe(1);
        expect(q.get(recent)).toBeUndefined();
        expect(q.list().map((j) => j.state)).toEqual(["running", "pending"]);
      });

      it("cleanup refuses to remove pending or running jobs", () => {
        const { q, clock } = setup();
        q.add("a");
        clock.advance(30 * DAY);
        for (const states of [["pending"], ["completed", "running"]] as JobState[][]) {
          expect(invalidArgument(() => q.cleanup({ olderThanMs: 0, states })).argument).toBe("states");
        }
        expect(invalidArgument(() => q.cleanup({ states: ["gone" as JobState] })).argument).toBe("states");
        expect(invalidArgument(() => q.cleanup({ olderThanMs: -1 })).argument).toBe("olderThanMs");
        expect(q.stats().total).toBe(1);
      });
    });

    describe("periodic jobs", () => {
      it("`every` fires once per period and skips missed periods", () => {
        const { q, clock } = setup();
        const t0 = clock.t;
        q.every("tick", 1000, "tick", { n: 1 }, { priority: 4, maxAttempts: 2 });
        expect(q.listPeriodic()).toEqual([
          {
            name: "tick",
            type: "tick",
            payload: { n: 1 },
            everyMs: 1000,
            cron: null,
            nextRunAt: t0 + 1000,
            lastRunAt: null,
            paused: false,
            pausedAt: null,
          },
        ]);
        expect(q.firePeriodic()).toBe(0);
        clock.advance(999);
        expect(q.firePeriodic()).toBe(0);
        clock.advance(1);
        expect(q.firePeriodic()).toBe(1);
        expect(q.firePeriodic()).toBe(0);
        const [job] = q.list({ type: "tick" });
        expect(job).toMatchObject({ payload: { n: 1 }, priority: 4, maxAttempts: 2, runAt: t0 + 1000 });
        expect(q.listPeriodic()[0]).toMatchObject({ nextRunAt: t0 + 2000, lastRunAt: t0 + 1000 });
        clock.advance(3500); // t0 + 4500: periods 2000, 3000 and 4000 were missed
        expect(q.firePeriodic()).toBe(1);
        expect(q.firePeriodic()).toBe(0);
        expect(q.listPeriodic()[0]).toMatchObject({ nextRunAt: t0 + 5000, lastRunAt: t0 + 4500 });
        expect(q.list({ type: "tick" })).toHaveLength(2);
      });

      it("re-registering keeps the schedule unless it changed; removePeriodic stops it", () => {
        const { q, clock } = setup();
        const t0 = clock.t;
        q.every("p", 1000, "a");
        clock.advance(400);
        q.every("p", 1000, "b", { v: 2 });
        expect(q.listPeriodic()[0]).toMatchObject({ type: "b", payload: { v: 2 }, nextRunAt: t0 + 1000 });
        q.every("p", 5000, "b");
        expect(q.listPeriodic()[0]).toMatchObject({ everyMs: 5000, nextRunAt: t0 + 400 + 5000 });
        q.every("other", 10, "c");
        expect(q.listPeriodic().map((p) => p.name)).toEqual(["other", "p"]);
        expect(q.removePeriodic("p")).toBe(true);
        expect(q.removePeriodic("p")).toBe(false);
        clock.advance(DAY);
        expect(q.firePeriodic()).toBe(1);
        expect(q.list().map((j) => j.type)).toEqual(["c"]);
      });

      it("`cron` follows a croner expression, once per period, skipping missed ones", () => {
        const { q, clock } = setup();
        clock.t = Date.UTC(2025, 0, 1, 12, 0, 0);
        q.cron("five", "*/5 * * * *", "report", { r: 1 }, { timezone: "UTC" });
        expect(q.listPeriodic()[0]).toMatchObject({
          cron: "*/5 * * * *",
          everyMs: null,
          nextRunAt: Date.UTC(2025, 0, 1, 12, 5, 0),
        });
        clock.t = Date.UTC(2025, 0, 1, 12, 4, 59, 999);
        expect(q.firePeriodic()).toBe(0);
        clock.t = Date.UTC(2025, 0, 1, 12, 5, 0);
        expect(q.firePeriodic()).toBe(1);
        expect(q.firePeriodic()).toBe(0);
        expect(q.listPeriodic()[0]!.nextRunAt).toBe(Date.UTC(2025, 0, 1, 12, 10, 0));
        clock.t = Date.UTC(2025, 0, 1, 13, 2, 0); // ten periods missed
        expect(q.firePeriodic()).toBe(1);
        expect(q.listPeriodic()[0]!.nextRunAt).toBe(Date.UTC(2025, 0, 1, 13, 5, 0));
        expect(q.list({ type: "report" }).map((j) => j.payload)).toEqual([{ r: 1 }, { r: 1 }]);
      });

      it("`cron` reads the expression in the given time zone", () => {
        const { q, clock } = setup();
        clock.t = Date.UTC(2025, 0, 1, 12, 0, 0);
        q.cron("nine", "0 9 * * *", "morning", null, { timezone: "America/New_York" });
        // 09:00 in New York in January is 14:00 UTC.
        expect(q.listPeriodic()[0]!.nextRunAt).toBe(Date.UTC(2025, 0, 1, 14, 0, 0));
      });

      it("a paused schedule does not fire; resuming skips the runs it missed and keeps the grid", () => {
        const { q, clock } = setup();
        const t0 = clock.t;
        q.every("tick", 1000, "tick");
        expect(q.pausePeriodic("tick")).toBe(true);
        expect(q.pausePeriodic("tick")).toBe(false); // already paused
        expect(q.listPeriodic()[0]).toMatchObject({ paused: true, pausedAt: t0, nextRunAt: t0 + 1000 });
        clock.advance(5500);
        expect(q.firePeriodic()).toBe(0);
        // Re-declaring the schedule (an application's restart) leaves the operator's pause alone.
        q.every("tick", 1000, "tick");
        expect(q.listPeriodic()[0]!.paused).toBe(true);
        expect(q.firePeriodic()).toBe(0);
        expect(q.resumePeriodic("tick")).toBe(true);
        expect(q.resumePeriodic("tick")).toBe(false); // not paused
        // Five runs were missed (t0+1000 .. t0+5000): none fires now, the next is the grid's next slot.
        expect(q.listPeriodic()[0]).toMatchObject({ paused: false, pausedAt: null, nextRunAt: t0 + 6000 });
        expect(q.firePeriodic()).toBe(0);
        clock.advance(500);
        expect(q.firePeriodic()).toBe(1);
        expect(q.list({ type: "tick" })).toHaveLength(1);
        expect(q.pausePeriodic("nope")).toBe(false);
        expect(q.resumePeriodic("nope")).toBe(false);
        expect(invalidArgument(() => q.pausePeriodic("")).argument).toBe("name");
        expect(invalidArgument(() => q.resumePeriodic(7 as unknown as string)).argument).toBe("name");
      });

      it("a cron schedule resumes at its next time after the resume", () => {
        const { q, clock } = setup();
        clock.t = Date.UTC(2025, 0, 1, 12, 0, 0);
        q.cron("five", "*/5 * * * *", "report", null, { timezone: "UTC" });
        q.pausePeriodic("five");
        clock.t = Date.UTC(2025, 0, 1, 13, 2, 0);
        expect(q.firePeriodic()).toBe(0);
        q.resumePeriodic("five");
        expect(q.listPeriodic()[0]!.nextRunAt).toBe(Date.UTC(2025, 0, 1, 13, 5, 0));
        expect(q.firePeriodic()).toBe(0);
      });

      it("pause and resume in any order: paused never fires, a fire is at most one job, the grid holds", () => {
        type Op = { op: "advance"; ms: number } | { op: "pause" } | { op: "resume" } | { op: "fire" };
        const opArb: fc.Arbitrary<Op> = fc.oneof(
          fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 3500 }) }),
          fc.constant({ op: "pause" as const }),
          fc.constant({ op: "resume" as const }),
          fc.constant({ op: "fire" as const }),
        );
        fc.assert(
          fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
            const { q, clock } = setup();
            const t0 = clock.t;
            q.every("tick", 1000, "tick");
            let paused = false;
            let fired = 0;
            for (const o of ops) {
              if (o.op === "advance") clock.advance(o.ms);
              else if (o.op === "pause") {
                expect(q.pausePeriodic("tick")).toBe(!paused);
                paused = true;
              } else if (o.op === "resume") {
                expect(q.resumePeriodic("tick")).toBe(paused);
                if (paused) expect(q.listPeriodic()[0]!.nextRunAt).toBeGreaterThan(clock.t);
                paused = false;
              } else {
                const n = q.firePeriodic();
                expect(n).toBeLessThanOrEqual(1);
                if (paused) expect(n).toBe(0);
                fired += n;
              }
              expect((q.listPeriodic()[0]!.nextRunAt - t0) % 1000).toBe(0);
            }
            expect(q.list({ type: "tick" })).toHaveLength(fired);
          }),
          { numRuns: 60 },
        );
      });

      it("refuses invalid schedules, writing nothing", () => {
        const { q } = setup();
        for (const expr of ["not a cron", "61 * * * *", "* * * * * * * *", "0 0 30 2 *", ""]) {
          expect(invalidArgument(() => q.cron("c", expr, "t")).argument).toBe("expression");
        }
        expect(
          invalidArgument(() => q.cron("c", "* * * * *", "t", null, { timezone: "Mars/Olympus" })).argument,
        ).toBe("timezone");
        expect(invalidArgument(() => q.every("e", 0, "t")).argument).toBe("everyMs");
        expect(invalidArgument(() => q.every("e", 1.5, "t")).argument).toBe("everyMs");
        expect(invalidArgument(() => q.every("", 10, "t")).argument).toBe("name");
        expect(invalidArgument(() => q.every("e", 10, "")).argument).toBe("type");
        expect(invalidArgument(() => q.every("e", 10, "t", { n: 1n })).argument).toBe("payload");
        expect(invalidArgument(() => q.every("e", 10, "t", null, { priority: 0.5 })).argument).toBe(
          "priority",
        );
        expect(invalidArgument(() => q.every("e", 10, "t", null, { maxAttempts: 0 })).argument).toBe(
          "maxAttempts",
        );
        expect(q.listPeriodic()).toEqual([]);
      });
    });

    describe("bad input", () => {
      const circular: Record<string, unknown> = { a: 1 };
      circular.self = circular;
      const cases: Array<[string, string, (q: JobQueue, ctx: { id: number; now: number }) => unknown]> = [
        ["a BigInt payload", "payload", (q) => q.add("t", { n: 10n })],
        ["a function in the payload", "payload", (q) => q.add("t", { f: () => 1 })],
        ["a function as the payload", "payload", (q) => q.add("t", () => 1)],
        ["a symbol as the payload", "payload", (q) => q.add("t", Symbol("s"))],
        ["NaN in the payload", "payload", (q) => q.add("t", { x: Number.NaN })],
        ["Infinity in the payload", "payload", (q) => q.add("t", [1, Number.POSITIVE_INFINITY])],
        [
          "-Infinity deep in the payload",
          "payload",
          (q) => q.add("t", { a: [{ b: Number.NEGATIVE_INFINITY }] }),
        ],
        ["a circular payload", "payload", (q) => q.add("t", circular)],
        ["a Map payload", "payload", (q) => q.add("t", new Map([["a", 1]]))],
        ["a Set deep in the payload", "payload", (q) => q.add("t", { tags: [new Set(["x"])] })],
        [
          "a class instance in the payload",
          "payload",
          (q) =>
            q.add("t", {
              at: new (class Point {
                x = 1;
              })(),
            }),
        ],
        ["a RegExp payload", "payload", (q) => q.add("t", /x/)],
        ["an Error in the payload", "payload", (q) => q.add("t", { err: new Error("e") })],
        ["a typed array payload", "payload", (q) => q.add("t", new Uint8Array([1, 2]))],
        [
          "a Map in an addMany item",
          "items[1].payload",
          (q) => q.addMany([{ type: "a" }, { type: "b", payload: new Map() }]),
        ],
        ["undefined inside an array", "payload", (q) => q.add("t", [1, undefined, 3])],
        ["NaN delayMs", "delayMs", (q) => q.add("t", null, { delayMs: Number.NaN })],
        ["negative delayMs", "delayMs", (q) => q.add("t", null, { delayMs: -1 })],
        ["infinite delayMs", "delayMs", (q) => q.add("t", null, { delayMs: Number.POSITIVE_INFINITY })],
        ["runAt and delayMs both", "runAt", (q, c) => q.add("t", null, { runAt: c.now, delayMs: 5 })],
        ["an invalid Date runAt", "runAt", (q) => q.add("t", null, { runAt: new Date("nope") })],
        ["a NaN runAt", "runAt", (q) => q.add("t", null, { runAt: Number.NaN })],
        ["an empty type", "type", (q) => q.add("", null)],
        ["a blank type", "type", (q) => q.add("   ", null)],
        ["a non-string type", "type", (q) => q.add(42 as unknown as string, null)],
        ["a fractional priority", "priority", (q) => q.add("t", null, { priority: 1.5 })],
        ["a NaN priority", "priority", (q) => q.add("t", null, { priority: Number.NaN })],
        ["a string priority", "priority", (q) => q.add("t", null, { priority: "1" as unknown as number })],
        ["maxAttempts 0", "maxAttempts", (q) => q.add("t", null, { maxAttempts: 0 })],
        ["fractional maxAttempts", "maxAttempts", (q) => q.add("t", null, { maxAttempts: 2.5 })],
        ["an empty key", "key", (q) => q.add("t", null, { key: "" })],
        ["a backoff factor below 1", "backoff.factor", (q) => q.add("t", null, { backoff: { factor: 0.5 } })],
        ["a negative backoff base", "backoff.baseMs", (q) => q.add("t", null, { backoff: { baseMs: -1 } })],
        ["jitter above 1", "backoff.jitter", (q) => q.add("t", null, { backoff: { jitter: 2 } })],
        [
          "one bad item in addMany",
          "items[1].payload",
          (q) =>
            q.addMany([
              { type: "ok", payload: 1 },
              { type: "bad", payload: { n: 1n } },
              { type: "ok", payload: 2 },
            ]),
        ],
        [
          "a bad option in the last addMany item",
          "items[2].delayMs",
          (q) => q.addMany([{ type: "a" }, { type: "b" }, { type: "c", options: { delayMs: -5 } }]),
        ],
        ["an empty type in addMany", "items[0].type", (q) => q.addMany([{ type: "" }, { type: "b" }])],
        ["addMany of a non-array", "items", (q) => q.addMany("jobs" as never)],
        ["addMany with a null item", "items[1]", (q) => q.addMany([{ type: "a" }, null as never])],
        ["an unknown state in list", "state", (q) => q.list({ state: "done" as JobState })],
        ["an unknown sortBy", "sortBy", (q) => q.list({ sortBy: "name" as never })],
        ["sortBy as SQL", "sortBy", (q) => q.list({ sortBy: "id; DROP TABLE tw_jobs" as never })],
        ["an unknown order", "order", (q) => q.list({ order: "up" as never })],
        ["a negative limit", "limit", (q) => q.list({ limit: -1 })],
        ["a zero limit", "limit", (q) => q.list({ limit: 0 })],
        ["a fractional limit", "limit", (q) => q.list({ limit: 2.5 })],
        ["a negative offset", "offset", (q) => q.list({ offset: -1 })],
        ["an empty type filter", "type", (q) => q.list({ type: "" })],
        ["an unknown target state", "to", (q, c) => q.moveToState(c.id, "archived" as JobState)],
        [
          "an unknown from state",
          "from",
          (q, c) => q.moveToState(c.id, "failed", { from: "idle" as JobState }),
        ],
      ];

      it("says what a refused payload value is, in one sentence", () => {
        const { q } = setup();
        expect(invalidArgument(() => q.add("t", { m: new Map() })).message).toBe(
          'payload: is not JSON-serialisable: member "m" is a Map, which JSON cannot keep; convert it to a plain object or array',
        );
        expect(invalidArgument(() => q.add("t", new (class Point {})())).message).toMatch(
          /the value is a Point/,
        );
        expect(invalidArgument(() => q.add("t", circular)).message).toBe(
          "payload: is not JSON-serialisable: it contains a cycle (an object that contains itself)",
        );
        // What JSON does keep stays accepted: a Date (as its ISO text), toJSON, null prototypes, boxed values.
        const at = new Date(Date.UTC(2025, 0, 2));
        const job = q.add("t", {
          at,
          own: { toJSON: () => ({ kept: true }) },
          bare: Object.assign(Object.create(null), { a: 1 }),
          boxed: new String("s"),
        });
        expect(q.get(job.id)!.payload).toEqual({
          at: at.toISOString(),
          own: { kept: true },
          bare: { a: 1 },
          boxed: "s",
        });
      });

      it.each(cases)("refuses %s naming %s, writing nothing", (_, argument, call) => {
        const { q, clock } = setup();
        const existing = q.add("existing", { keep: true });
        const before = q.stats();
        const err = invalidArgument(() => call(q, { id: existing.id, now: clock.t }));
        expect(err.argument).toBe(argument);
        expect(err.message).toContain(argument);
        expect(err.code).toBe("ERR_INVALID_ARGUMENT");
        expect(q.stats()).toEqual(before);
        expect(q.list({ limit: 1000 })).toEqual([existing]);
      });

      it("keeps undefined object members out, as JSON does, without refusing them", () => {
        const { q } = setup();
        const job = q.add("t", { a: 1, gone: undefined });
        expect(q.get(job.id)!.payload).toStrictEqual({ a: 1 });
      });
    });
  });
}

/** For any sequence of operations, every queue answers as the first one does and holds the same jobs. */
export function queuesAgree(impls: QueueImpl[]): void {
  const [reference, ...others] = impls;
  if (!reference) throw new Error("no queue to compare");
  describe.each(others)(`$name agrees with ${reference.name}`, (impl) => {
    type Op =
      | {
          op: "add";
          type: string;
          priority: number;
          delayMs: number;
          key: string | null;
          maxAttempts: number;
        }
      | { op: "addMany"; n: number; priority: number; key: string | null }
      | { op: "advance"; ms: number }
      | { op: "claim"; limit: number; leaseMs: number }
      | { op: "settle"; pick: number; outcome: "ok" | "retry" | "final" }
      | { op: "move"; pick: number; to: JobState; from: JobState | null }
      | { op: "retry"; pick: number }
      | { op: "cancel"; pick: number }
      | { op: "reap" }
      | { op: "cleanup"; olderThanMs: number }
      | {
          op: "list";
          state: JobState | null;
          sortBy: "created" | "priority" | "runAt";
          order: "asc" | "desc";
        };

    const key = fc.option(fc.constantFrom("k1", "k2"), { nil: null });
    const pick = fc.nat(15);
    const state = fc.constantFrom(...JOB_STATES);
    const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      w(
        5,
        fc.record({
          op: fc.constant("add" as const),
          type: fc.constantFrom("a", "b"),
          priority: fc.integer({ min: -1, max: 1 }),
          delayMs: fc.constantFrom(0, 0, 50, 500),
          key,
          maxAttempts: fc.integer({ min: 1, max: 3 }),
        }),
      ),
      w(
        2,
        fc.record({
          op: fc.constant("addMany" as const),
          n: fc.integer({ min: 0, max: 4 }),
          priority: fc.integer({ min: -1, max: 1 }),
          key,
        }),
      ),
      w(3, fc.record({ op: fc.constant("advance" as const), ms: fc.constantFrom(1, 60, 400, 2000) })),
      w(
        4,
        fc.record({
          op: fc.constant("claim" as const),
          limit: fc.integer({ min: 1, max: 4 }),
          leaseMs: fc.constantFrom(100, 1000),
        }),
      ),
      w(
        5,
        fc.record({
          op: fc.constant("settle" as const),
          pick,
          outcome: fc.constantFrom("ok" as const, "retry" as const, "final" as const),
        }),
      ),
      w(
        2,
        fc.record({
          op: fc.constant("move" as const),
          pick,
          to: fc.constantFrom("pending", "completed", "failed", "cancelled" as const),
          from: fc.option(state, { nil: null }),
        }),
      ),
      w(2, fc.record({ op: fc.constant("retry" as const), pick })),
      w(1, fc.record({ op: fc.constant("cancel" as const), pick })),
      w(1, fc.record({ op: fc.constant("reap" as const) })),
      w(1, fc.record({ op: fc.constant("cleanup" as const), olderThanMs: fc.constantFrom(0, 100, 5000) })),
      w(
        1,
        fc.record({
          op: fc.constant("list" as const),
          state: fc.option(state, { nil: null }),
          sortBy: fc.constantFrom("created", "priority", "runAt" as const),
          order: fc.constantFrom("asc", "desc" as const),
        }),
      ),
    );

    /** Runs one operation; returns what a caller would observe (or the error's argument/message). */
    function apply(q: JobQueue, clock: ManualClock, held: Job[], o: Op): unknown {
      try {
        switch (o.op) {
          case "add":
            return q.add(
              o.type,
              { t: clock.t },
              {
                priority: o.priority,
                delayMs: o.delayMs,
                maxAttempts: o.maxAttempts,
                ...(o.key ? { key: o.key } : {}),
              },
            );
          case "addMany":
            return q.addMany(
              Array.from({ length: o.n }, (_, i) => ({
                type: "m",
                payload: [i],
                options: { priority: o.priority, ...(o.key && i === 0 ? { key: o.key } : {}) },
              })),
            );
          case "advance":
            return clock.advance(o.ms);
          case "claim": {
            const got = q.claim(OWNER, o.limit, o.leaseMs);
            held.push(...got);
            return got;
          }
          case "settle": {
            if (held.length === 0) return null;
            const [job] = held.splice(o.pick % held.length, 1);
            const s: Settlement =
              o.outcome === "ok"
                ? { job: job!, ok: true }
                : { job: job!, ok: false, error: `e${clock.t}`, retry: o.outcome === "retry" };
            return q.settle(OWNER, [s]);
          }
          case "move":
            return q.moveToState(1 + o.pick, o.to, o.from ? { from: o.from } : {});
          case "retry":
            return q.retry(1 + o.pick);
          case "cancel":
            return q.cancel(1 + o.pick);
          case "reap":
            return q.reapExpired();
          case "cleanup":
            return q.cleanup({ olderThanMs: o.olderThanMs });
          case "list":
            return q.list({
              ...(o.state ? { state: o.state } : {}),
              sortBy: o.sortBy,
              order: o.order,
              limit: 1000,
            });
        }
      } catch (err) {
        return { threw: (err as Error).name, message: (err as Error).message };
      }
    }

    it("for any sequence of operations, it gives the same answers and holds the same jobs", () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 10, maxLength: 60 }), (ops) => {
          const backoff = { baseMs: 200, factor: 2, jitter: 0 };
          // Fresh backing stores per run, so ids start at 1 on both sides.
          const ref = { clock: new ManualClock(), held: [] as Job[] };
          const other = { clock: new ManualClock(), held: [] as Job[] };
          const a = reference.fresh({ backoff, clock: ref.clock.now });
          const b = impl.fresh({ backoff, clock: other.clock.now });
          try {
            ops.forEach((o, step) => {
              const want = apply(a.queue, ref.clock, ref.held, o);
              const got = apply(b.queue, other.clock, other.held, o);
              expect(got, `step ${step}: ${JSON.stringify(o)}`).toEqual(want);
            });
            expect(b.queue.list({ limit: 1000 })).toEqual(a.queue.list({ limit: 1000 }));
            expect(b.queue.stats()).toEqual(a.queue.stats());
          } finally {
            a.close();
            b.close();
          }
        }),
        { numRuns: 100 },
      );
    });
  });
}

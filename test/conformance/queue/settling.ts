/** Contract: queue conformance cases — settle, stats, stuck and cleanup — on one implementation. */
import { describe, expect, it } from "vitest";
import type { Job, JobState } from "../../../src/index.js";
import { workerSource } from "../../../src/queue/source.js";
import { invalidArgument } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { claimOne, complete, DAY, failFinal, OWNER, queueSetup } from "./kit.js";

export function settlingCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
  describe("settle, stats, stuck and cleanup", () => {
    it("retries a failed attempt after the backoff and fails it for good at maxAttempts", () => {
      const { q, clock } = setup({ backoff: { baseMs: 100, factor: 3, jitter: 0 } });
      const job = q.add("a", null, { maxAttempts: 3 });
      const settle = (s: { ok: false; error: string; retry: boolean }, j: Job) =>
        workerSource(q).settle(OWNER, [{ job: j, ...s }]);
      const t1 = clock.t;
      expect(settle({ ok: false, error: "e1", retry: true }, claimOne(q)).applied[0]!.final).toBe(false);
      expect(q.get(job.id)).toMatchObject({
        state: "pending",
        attempts: 1,
        lastError: "e1",
        runAt: t1 + 100,
      });
      clock.advance(99);
      expect(workerSource(q).claim(OWNER, 1, 1000)).toEqual([]);
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
      workerSource(q).settle(OWNER, [{ job: claimOne(q), ok: false, error: "x", retry: true }]);
      expect(q.get(job.id)!.runAt).toBe(t + 7000);
    });

    it("settles only while the lease holds for the same owner and attempt", () => {
      const { q } = setup();
      q.add("a");
      const held = claimOne(q);
      const other = workerSource(q).settle("someone-else", [{ job: held, ok: true }]);
      expect(other.stale).toHaveLength(1);
      expect(q.get(held.id)!.state).toBe("running");
      expect(workerSource(q).settle(OWNER, [{ job: { ...held, attempts: 2 }, ok: true }]).stale).toHaveLength(
        1,
      );
      complete(q, held);
      expect(workerSource(q).settle(OWNER, [{ job: held, ok: true }]).stale).toHaveLength(1);
    });

    it("keeps the worker's side out of the queue's public type: workerSource reaches it", () => {
      const { q } = setup();
      for (const name of ["claim", "settle", "extendLeases", "release", "reapExpired", "onAdded"]) {
        expect(name in q, name).toBe(false);
        expect(typeof (workerSource(q) as unknown as Record<string, unknown>)[name], name).toBe("function");
      }
      // @ts-expect-error claims are the worker's, not part of JobQueue
      expect(q.claim).toBeUndefined();
      expect(workerSource(q).now()).toBe(q.now());
    });

    it("release returns unstarted jobs without spending their attempt", () => {
      const { q } = setup();
      q.addMany([{ type: "a" }, { type: "b" }]);
      const held = workerSource(q).claim(OWNER, 2, 1000);
      expect(workerSource(q).release(OWNER, held)).toBe(2);
      for (const j of held) {
        expect(q.get(j.id)).toMatchObject({
          state: "pending",
          attempts: 0,
          leaseOwner: null,
          startedAt: null,
        });
      }
      expect(workerSource(q).release(OWNER, held)).toBe(0);
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
        expect(workerSource(q).extendLeases(OWNER, 2_000)).toEqual([long.id]);
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
}

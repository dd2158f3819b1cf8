/** Contract: queue conformance cases — get and list, moveToState, retry and cancel — on one implementation. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Job, JobQueue, JobState, ListOptions } from "../../../src/index.js";
import { workerSource } from "../../../src/queue/source.js";
import { invalidArgument, type ManualClock } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { claimOne, complete, failFinal, OWNER, queueSetup } from "./kit.js";

export function readingCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
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
      expect(
        workerSource(q)
          .claim(OWNER, 1, 1000)
          .map((j) => j.id),
      ).toEqual([job.id]);
      expect(q.moveToState(987654, "completed")).toBe(false);
    });

    it("moves only from the states named in `from`", () => {
      const { q } = setup();
      const job = q.add("a");
      expect(q.moveToState(job.id, "completed", { from: "running" })).toBe(false);
      expect(q.get(job.id)!.state).toBe("pending");
      expect(q.moveToState(job.id, "cancelled", { from: ["running"] })).toBe(false);
      expect(q.get(job.id)!.state).toBe("pending");
      claimOne(q);
      expect(q.moveToState(job.id, "failed", { from: ["pending", "running"] })).toBe(true);
      expect(q.get(job.id)).toMatchObject({ state: "failed", leaseOwner: null, leaseExpiresAt: null });
      // Exactly one of two racing moves from the same state wins.
      expect(q.moveToState(job.id, "pending", { from: "failed" })).toBe(true);
      expect(q.moveToState(job.id, "pending", { from: "failed" })).toBe(false);
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
      const result = workerSource(q).settle(OWNER, [{ job: held, ok: true }]);
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
}

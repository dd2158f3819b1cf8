/**
 * Contract: queue conformance cases — the job state machine (src/queue/states.ts)
 * as moveToState sees it: every move the table gives it works with its side
 * effects, every other move is refused and writes nothing — on one implementation.
 */
import { describe, expect, it } from "vitest";
import {
  IllegalTransitionError,
  JOB_STATES,
  type Job,
  type JobQueue,
  type JobState,
} from "../../../src/index.js";
import { JOB_MOVES, JOB_TRANSITIONS } from "../../../src/queue/states.js";
import { invalidArgument } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { claimOne, complete, failFinal, queueSetup } from "./kit.js";

/** A new job of `q` brought to `state` by the queue's own operations. */
function jobIn(q: JobQueue, state: JobState, key?: string): Job {
  const job = q.add("a", null, key === undefined ? {} : { key });
  if (state === "cancelled") expect(q.cancel(job.id)).toBe(true);
  if (state === "running" || state === "completed" || state === "failed") {
    const held = claimOne(q);
    expect(held.id).toBe(job.id);
    if (state === "completed") complete(q, held);
    if (state === "failed") failFinal(q, held);
  }
  const now = q.get(job.id)!;
  expect(now.state).toBe(state);
  return now;
}

export function movingCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
  describe("the job state machine through moveToState", () => {
    const legal = JOB_MOVES.filter((m) => m.by.includes("moveToState"));

    it.each(legal)("moves a $from job to $to", ({ from, to }) => {
      const { q, clock } = setup();
      const job = jobIn(q, from);
      clock.advance(1000);
      expect(q.moveToState(job.id, to, { from })).toBe(true);
      const after = q.get(job.id)!;
      expect(after).toMatchObject({
        state: to,
        leaseOwner: null,
        leaseExpiresAt: null,
        finishedAt: to === "pending" ? null : clock.t,
        attempts: job.attempts,
      });
      if (to === "pending") expect(after.runAt).toBe(Math.max(job.runAt, clock.t));
    });

    const illegal = JOB_STATES.flatMap((from) =>
      JOB_STATES.filter(
        (to) => to !== "running" && to !== from && !legal.some((m) => m.from === from && m.to === to),
      ).map((to) => ({ from, to })),
    );

    it.each(illegal)("refuses to move a $from job to $to, changing nothing", ({ from, to }) => {
      const { q } = setup();
      const job = jobIn(q, from);
      let thrown: unknown;
      try {
        q.moveToState(job.id, to);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(IllegalTransitionError);
      expect(thrown).toMatchObject({ code: "ERR_ILLEGAL_TRANSITION", id: job.id, from, to });
      const next = JOB_TRANSITIONS[from];
      expect((thrown as Error).message).toBe(
        `job ${job.id} is ${from} and cannot move to ${to}: ` +
          (next.length === 0 ? `${from} is final` : `${from} moves only to ${next.join(" or ")}`),
      );
      expect(q.get(job.id)).toEqual(job);
    });

    it("refuses arguments that name a move the table lacks, before reading the job", () => {
      const { q } = setup();
      const job = jobIn(q, "pending");
      expect(invalidArgument(() => q.moveToState(job.id, "running")).argument).toBe("to");
      expect(invalidArgument(() => q.moveToState(job.id, "failed", { from: "completed" })).message).toBe(
        "from: a job never moves from completed to failed: completed is final",
      );
      expect(invalidArgument(() => q.moveToState(999, "pending", { from: [] })).argument).toBe("from");
      expect(q.get(job.id)).toEqual(job);
    });

    it("answers false for a missing job, a job in `to` already or outside `from`, and a key held by another job", () => {
      const { q } = setup();
      expect(q.moveToState(999, "cancelled")).toBe(false);
      for (const state of ["pending", "completed", "failed", "cancelled"] as const) {
        const own = setup().q; // jobIn claims the queue's first due job: one queue per state
        const job = jobIn(own, state);
        expect(own.moveToState(job.id, state)).toBe(false);
        expect(own.get(job.id)).toEqual(job);
      }
      const done = jobIn(q, "completed");
      // Named in `from`, a state the job is not in is a miss, not a refusal.
      expect(q.moveToState(done.id, "cancelled", { from: ["pending", "running"] })).toBe(false);
      expect(q.cancel(done.id)).toBe(false);
      const failed = jobIn(q, "failed", "k");
      const holder = q.add("a", null, { key: "k" });
      expect(q.moveToState(failed.id, "pending")).toBe(false);
      expect(q.get(failed.id)!.state).toBe("failed");
      expect(q.moveToState(holder.id, "cancelled")).toBe(true);
      expect(q.moveToState(failed.id, "pending")).toBe(true);
    });
  });
}

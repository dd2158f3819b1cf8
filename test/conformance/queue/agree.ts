/**
 * Contract: the differential property of the queue conformance suite: for
 * any sequence of operations, every queue answers as the first one in the
 * list does and holds the same jobs, and every state a job leaves it for is a
 * move the state machine (src/queue/states.ts) gives the operation that made it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JOB_STATES, type Job, type JobQueue, type JobState } from "../../../src/index.js";
import { type Settlement, workerSource } from "../../../src/queue/source.js";
import { isJobMove, type JobMover } from "../../../src/queue/states.js";
import { ManualClock } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { OWNER } from "./kit.js";

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
      | { op: "release"; pick: number }
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
      w(1, fc.record({ op: fc.constant("release" as const), pick })),
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
            const got = workerSource(q).claim(OWNER, o.limit, o.leaseMs);
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
            return workerSource(q).settle(OWNER, [s]);
          }
          case "move":
            return q.moveToState(1 + o.pick, o.to, o.from ? { from: o.from } : {});
          case "retry":
            return q.retry(1 + o.pick);
          case "cancel":
            return q.cancel(1 + o.pick);
          case "release": {
            if (held.length === 0) return null;
            return workerSource(q).release(OWNER, held.splice(o.pick % held.length, 1));
          }
          case "reap":
            return workerSource(q).reapExpired();
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

    /** The operation of the state machine each step is; the others move no job. */
    const MOVER: Partial<Record<Op["op"], JobMover>> = {
      claim: "claim",
      settle: "settle",
      release: "release",
      reap: "reapExpired",
      move: "moveToState",
      retry: "retry",
      cancel: "cancel",
    };

    /** Every job's state, by id. */
    const states = (q: JobQueue) => new Map(q.list({ limit: 1000 }).map((j) => [j.id, j.state]));

    /** The moves step `o` made on `q` that the state machine does not give its operation. */
    function strayMoves(before: Map<number, JobState>, after: Map<number, JobState>, o: Op): string[] {
      const stray: string[] = [];
      for (const [id, to] of after) {
        const from = before.get(id);
        if (from === undefined ? to !== "pending" : from !== to && !isJobMove(from, to, MOVER[o.op]!))
          stray.push(`job ${id}: ${from ?? "new"} -> ${to} by ${o.op}`);
      }
      return stray;
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
            let before = [states(a.queue), states(b.queue)] as const;
            ops.forEach((o, step) => {
              const want = apply(a.queue, ref.clock, ref.held, o);
              const got = apply(b.queue, other.clock, other.held, o);
              expect(got, `step ${step}: ${JSON.stringify(o)}`).toEqual(want);
              const after = [states(a.queue), states(b.queue)] as const;
              expect(strayMoves(before[0], after[0], o), `${reference.name}, step ${step}`).toEqual([]);
              expect(strayMoves(before[1], after[1], o), `${impl.name}, step ${step}`).toEqual([]);
              before = after;
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

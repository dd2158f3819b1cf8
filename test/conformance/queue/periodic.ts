/** Contract: queue conformance cases — periodic jobs — on one implementation. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { invalidArgument } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { DAY, queueSetup } from "./kit.js";

export function periodicCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
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
      expect(invalidArgument(() => q.every("e", 10, "t", null, { priority: 0.5 })).argument).toBe("priority");
      expect(invalidArgument(() => q.every("e", 10, "t", null, { maxAttempts: 0 })).argument).toBe(
        "maxAttempts",
      );
      expect(q.listPeriodic()).toEqual([]);
    });
  });
}

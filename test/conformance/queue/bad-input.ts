/** Contract: queue conformance cases — bad input: a clear error and nothing changed — on one implementation. */
import { describe, expect, it } from "vitest";
import type { JobQueue, JobState } from "../../../src/index.js";
import { invalidArgument } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";
import { queueSetup } from "./kit.js";

export function badInputCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
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
}

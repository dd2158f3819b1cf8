/**
 * The operator's console through the library: search with its total and a
 * text `q`, update (priority, run_at), remove, single actions and bulk actions
 * with an expected count, on every queue implementation (test/conformance/queue-impls.ts).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CountChangedError, type Job, type JobQueue } from "../src/index.js";
import { workerSource } from "../src/queue/source.js";
import { useQueues } from "./conformance/queue-impls.js";
import { invalidArgument, ManualClock } from "./helpers.js";

const IMPLS = useQueues();

function failFinal(q: JobQueue, job: Job, error: string): void {
  const [claimed] = workerSource(q).claim("op", 1, 30_000);
  expect(claimed?.id).toBe(job.id);
  workerSource(q).settle("op", [{ job: claimed!, ok: false, error, retry: false }]);
}

describe.each(IMPLS)("$name", (impl) => {
  it("searches payload and error text, escaping LIKE's wildcards, with paging and a total", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    const a = q.add("email", { to: "Alice@example.com", note: "100%" });
    q.add("email", { to: "bob@example.com", note: "100 percent" });
    const c = q.add("report", { id: "a_b" });
    q.add("report", { id: "axb" });
    failFinal(q, a, "SMTP timeout\n    at send (mail.js:1)");

    expect(q.search({ q: "alice" }).jobs.map((j) => j.id)).toEqual([a.id]);
    expect(q.search({ q: "100%" }).jobs.map((j) => j.id)).toEqual([a.id]);
    expect(q.search({ q: "a_b" }).jobs.map((j) => j.id)).toEqual([c.id]);
    expect(q.search({ q: "smtp TIMEOUT" }).total).toBe(1);
    expect(q.search({ type: "email", state: "pending" }).total).toBe(1);
    const page = q.search({ limit: 2, offset: 1, sortBy: "created", order: "desc" });
    expect(page.total).toBe(4);
    expect(page.jobs.map((j) => j.type)).toEqual(["report", "email"]);
    expect(q.count({ type: "report" })).toBe(2);
    invalidArgument(() => q.search({ q: 5 as unknown as string }));
    invalidArgument(() => q.count({ state: "nope" as "pending" }));
  });

  it("updates a pending job's priority and run_at, and nothing else", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    const job = q.add("t", null, { delayMs: 60_000 });
    expect(q.update(job.id, { priority: 7 })).toBe(true);
    expect(q.update(job.id, { runAt: new Date(clock.t + 5) })).toBe(true);
    expect(q.get(job.id)).toMatchObject({ priority: 7, runAt: clock.t + 5 });
    invalidArgument(() => q.update(job.id, {}));
    invalidArgument(() => q.update(job.id, { priority: 1.5 }));
    expect(q.get(job.id)?.priority).toBe(7);
    workerSource(q).claim("op", 10, 30_000);
    expect(q.get(job.id)?.state).toBe("pending"); // not due yet
    clock.advance(10);
    workerSource(q).claim("op", 10, 30_000);
    expect(q.update(job.id, { priority: 1 })).toBe(false);
    expect(q.remove(job.id)).toBe(false); // running: a worker holds it
    expect(q.get(job.id)?.priority).toBe(7);
  });

  it("acts on one job: run now promotes only a delayed job, delete removes it", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    const later = q.add("t", null, { delayMs: 3_600_000 });
    const due = q.add("t");
    expect(q.act("run", later.id)).toBe(true);
    expect(q.get(later.id)?.runAt).toBe(clock.t);
    expect(q.act("run", due.id)).toBe(false);
    expect(q.act("priority", due.id, { priority: 3 })).toBe(true);
    expect(q.get(due.id)?.priority).toBe(3);
    expect(q.act("retry", due.id)).toBe(false);
    expect(q.act("cancel", due.id)).toBe(true);
    expect(q.act("retry", due.id)).toBe(true);
    expect(q.act("delete", due.id)).toBe(true);
    expect(q.get(due.id)).toBeUndefined();
    invalidArgument(() => q.act("explode" as "run", later.id));
    invalidArgument(() => q.act("priority", later.id));
  });

  it("bulk actions change every matching job, and refuse whole when the count moved", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    for (let i = 0; i < 5; i++) q.add("sync", { i });
    const other = q.add("mail");
    expect(q.count({ type: "sync", state: "pending" })).toBe(5);
    q.add("sync", { i: 5 });
    expect(() => q.bulk("cancel", { type: "sync", state: "pending" }, { expect: 5 })).toThrow(
      CountChangedError,
    );
    expect(q.count({ type: "sync", state: "cancelled" })).toBe(0);
    expect(q.bulk("cancel", { type: "sync", state: "pending" }, { expect: 6 })).toBe(6);
    expect(q.get(other.id)?.state).toBe("pending");
    expect(q.bulk("retry", { type: "sync" })).toBe(6);
    expect(q.bulk("priority", { type: "sync" }, { priority: 9 })).toBe(6);
    expect(q.search({ sortBy: "priority", order: "desc", limit: 1 }).jobs[0]?.priority).toBe(9);
    expect(q.bulk("delete", { q: '"i":3' })).toBe(1);
    expect(q.count()).toBe(6);
    invalidArgument(() => q.bulk("priority", {}));
  });

  it("a bulk retry keeps dedup keys: of two failed jobs with one key, one runs again", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    const a = q.add("t", null, { key: "k" });
    failFinal(q, a, "x");
    const b = q.add("t", null, { key: "k" });
    failFinal(q, b, "x");
    expect(q.bulk("retry", { state: "failed" })).toBe(1);
    expect(q.count({ state: "pending" })).toBe(1);
  });

  it("search's total equals the filtered count, for any data and text (property)", () => {
    const clock = new ManualClock();
    const q = impl.make({ clock: clock.now });
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 6 }), { maxLength: 8 }),
        fc.string({ maxLength: 3 }),
        (payloads, text) => {
          const ids = new Set(payloads.map((p) => q.add("p", { p }).id));
          const found = q.search({ type: "p", q: text, limit: 1000 });
          const expected = q
            .search({ type: "p", limit: 1000 })
            .jobs.filter((j) => text === "" || lower(JSON.stringify(j.payload)).includes(lower(text)));
          expect(found.jobs.map((j) => j.id)).toEqual(expected.map((j) => j.id));
          expect(found.total).toBe(expected.length);
          q.bulk("delete", { type: "p" });
          expect([...ids].every((id) => q.get(id) === undefined)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });
});

function lower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Contract: queue conformance cases — add, claim order, dedup key and ids — on one implementation. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Job } from "../../../src/index.js";
import { workerSource } from "../../../src/queue/source.js";
import type { QueueImpl } from "../queue-impls.js";
import { claimOne, claimOrder, complete, failFinal, OWNER, queueSetup } from "./kit.js";

export function addingCases(impl: QueueImpl): void {
  const setup = queueSetup(impl);
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
      const [claimed] = workerSource(q).claim(OWNER, 1, 1000);
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
      const claimed = [...workerSource(q).claim(OWNER, 2, 1000), ...workerSource(q).claim(OWNER, 10, 1000)];
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
      expect(workerSource(q).claim(OWNER, 10, 5000)).toEqual([]);
    });

    it("does not hand out a delayed job before its time", () => {
      const { q, clock } = setup();
      const t0 = clock.t;
      const delayed = q.add("later", null, { delayMs: 1000 });
      const dated = q.add("dated", null, { runAt: new Date(t0 + 2000) });
      const epoch = q.add("epoch", null, { runAt: t0 + 3000 });
      expect(delayed.runAt).toBe(t0 + 1000);
      expect(dated.runAt).toBe(t0 + 2000);
      expect(workerSource(q).claim(OWNER, 10, 1000)).toEqual([]);
      clock.advance(999);
      expect(workerSource(q).claim(OWNER, 10, 1000)).toEqual([]);
      clock.advance(1);
      expect(
        workerSource(q)
          .claim(OWNER, 10, 1000)
          .map((j) => j.id),
      ).toEqual([delayed.id]);
      clock.advance(1500);
      expect(
        workerSource(q)
          .claim(OWNER, 10, 1000)
          .map((j) => j.id),
      ).toEqual([dated.id]);
      clock.advance(500);
      expect(
        workerSource(q)
          .claim(OWNER, 10, 1000)
          .map((j) => j.id),
      ).toEqual([epoch.id]);
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
              const batch = workerSource(q).claim(OWNER, n, 60_000);
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
}

/**
 * Per-minute rollups (src/history) against a real SQLite file: nothing is
 * written before a flush, a flush writes each minute once and merges into
 * what an earlier flush (or another process) wrote, what a failed flush held
 * is written by the next, old minutes are pruned, and percentiles read from
 * merged histograms stay within the histogram's stated error of the true
 * value of their rank (a fast-check property over arbitrary durations split
 * over minutes and flushes).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bucketOf,
  emptyHistogram,
  MIN_MS,
  merge,
  observe,
  quantile,
  RELATIVE_ERROR,
} from "../src/history/histogram.js";
import { historyOf, MAX_LINES } from "../src/history/query.js";
import { HOUR_MS, MINUTE_MS, minuteOf, Rollups } from "../src/history/rollups.js";
import { openStore } from "../src/store.js";
import { invalidArgument, ManualClock, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-history-");

function fixture(options: { retentionMs?: number; hourRetentionMs?: number } = {}) {
  const path = join(tempDir(), "h.db");
  const store = openStore(path);
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
  const rollups = new Rollups(store, { ...options, now: clock.now });
  /** The rows as the file holds them, read by a connection of the test's own. */
  const inFile = (sql: string, ...args: unknown[]) => {
    const conn = new Database(path, { readonly: true });
    try {
      return conn.prepare(sql).all(...args) as Array<Record<string, unknown>>;
    } finally {
      conn.close();
    }
  };
  return { path, store, clock, rollups, inFile };
}

/** The value of rank ceil(q·n) among `values`: what quantile() promises to approximate. */
function trueQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

describe("Rollups", () => {
  it("writes nothing until a flush, then one row per minute, series and label", () => {
    const { clock, rollups, inFile, store } = fixture();
    rollups.add("jobs.completed", "email");
    rollups.add("jobs.completed", "email", 2);
    rollups.add("jobs.completed", "report");
    rollups.observe("jobs.run", "email", 12.5);
    clock.advance(MINUTE_MS);
    rollups.add("jobs.completed", "email");
    expect(inFile("SELECT * FROM tw_rollups")).toEqual([]);
    expect(rollups.pendingMinutes).toBe(2);

    expect(rollups.flush()).toBe(0);
    const t0 = minuteOf(clock.t - MINUTE_MS);
    expect(
      inFile("SELECT series, at, label, count FROM tw_rollups WHERE step = 60000 ORDER BY series, at, label"),
    ).toEqual([
      { series: "jobs.completed", at: t0, label: "email", count: 3 },
      { series: "jobs.completed", at: t0, label: "report", count: 1 },
      { series: "jobs.completed", at: t0 + MINUTE_MS, label: "email", count: 1 },
      { series: "jobs.run", at: t0, label: "email", count: 1 },
    ]);
    // And the hour both minutes are in.
    expect(
      inFile("SELECT series, at, label, count FROM tw_rollups WHERE step = 3600000 ORDER BY series, label"),
    ).toEqual([
      { series: "jobs.completed", at: t0, label: "email", count: 4 },
      { series: "jobs.completed", at: t0, label: "report", count: 1 },
      { series: "jobs.run", at: t0, label: "email", count: 1 },
    ]);
    expect(
      inFile("SELECT sum, min, max, hist FROM tw_rollups WHERE series = 'jobs.run' AND step = 60000"),
    ).toEqual([{ sum: 12.5, min: 12.5, max: 12.5, hist: JSON.stringify([bucketOf(12.5), 1]) }]);
    expect(rollups.pendingMinutes).toBe(0);
    // A flush with nothing gathered writes nothing and changes nothing.
    rollups.flush();
    expect(inFile("SELECT count(*) AS n FROM tw_rollups")).toEqual([{ n: 7 }]);
    store.close();
  });

  it("merges a minute flushed twice, and by a second process's Rollups on the same file", () => {
    const { path, clock, rollups, store } = fixture();
    rollups.add("jobs.completed", "email", 2);
    for (const ms of [1, 2, 3]) rollups.observe("jobs.run", "email", ms);
    rollups.flush();
    rollups.add("jobs.completed", "email");
    rollups.observe("jobs.run", "email", 400);
    rollups.flush();
    // A restarted daemon, in the same minute.
    const other = openStore(path);
    const again = new Rollups(other, { now: clock.now });
    again.add("jobs.completed", "email", 4);
    again.observe("jobs.run", "email", 0.5);
    again.flush();

    const minute = minuteOf(clock.t);
    const [completed] = rollups.read("jobs.completed", minute, minute + MINUTE_MS);
    expect(completed).toMatchObject({ at: minute, label: "email", count: 7, hist: null });
    const [run] = rollups.read("jobs.run", minute, minute + MINUTE_MS);
    expect(run!.count).toBe(5);
    expect(run!.hist).toMatchObject({ count: 5, sum: 406.5, min: 0.5, max: 400 });
    const all = emptyHistogram();
    for (const ms of [1, 2, 3, 400, 0.5]) observe(all, ms);
    expect(run!.hist!.buckets).toEqual(all.buckets);
    other.close();
    store.close();
  });

  it("reads what is not flushed yet merged with what is", () => {
    const { clock, rollups, store } = fixture();
    rollups.add("changes.pushed", "hub", 10);
    rollups.observe("sync.cycle", "peer-a", 50);
    rollups.flush();
    rollups.add("changes.pushed", "hub", 5);
    rollups.add("changes.pushed", "sync", 1);
    rollups.observe("sync.cycle", "peer-a", 70);
    const m = minuteOf(clock.t);
    expect(rollups.read("changes.pushed", m, m + MINUTE_MS).map((r) => [r.label, r.count])).toEqual([
      ["hub", 15],
      ["sync", 1],
    ]);
    expect(rollups.read("changes.pushed", m, m + MINUTE_MS, "sync").map((r) => r.count)).toEqual([1]);
    const [cycle] = rollups.read("sync.cycle", m, m + MINUTE_MS);
    expect(cycle!.hist).toMatchObject({ count: 2, min: 50, max: 70 });
    // Reading merged copies: the pending cell is not changed by it.
    rollups.flush();
    expect(rollups.read("sync.cycle", m, m + MINUTE_MS)[0]!.hist!.count).toBe(2);
    store.close();
  });

  it("keeps what a flush could not write (the file locked by another program) for the next flush", () => {
    const { path, clock, rollups, inFile, store } = fixture();
    store.setBusyWait(0, { attempts: 0 });
    rollups.add("jobs.completed", "email", 3);
    rollups.observe("jobs.wait", "email", 8);
    const locker = new Database(path);
    locker.exec("BEGIN IMMEDIATE");
    expect(() => rollups.flush()).toThrow(/locked|busy/i);
    clock.advance(MINUTE_MS);
    rollups.add("jobs.completed", "email");
    locker.exec("ROLLBACK");
    locker.close();
    rollups.flush();
    expect(inFile("SELECT series, count FROM tw_rollups WHERE step = 60000 ORDER BY series, at")).toEqual([
      { series: "jobs.completed", count: 3 },
      { series: "jobs.completed", count: 1 },
      { series: "jobs.wait", count: 1 },
    ]);
    store.close();
  });

  it("prunes minute and hour rows past their retentions at each flush, and pending minutes past them before writing", () => {
    const { clock, rollups, inFile, store } = fixture({
      retentionMs: 10 * MINUTE_MS,
      hourRetentionMs: 2 * HOUR_MS,
    });
    for (let i = 0; i < 15; i++) {
      rollups.add("jobs.completed", "email");
      rollups.flush();
      clock.advance(MINUTE_MS);
    }
    // The last flush, at 12:14, kept the minutes from 12:04 (ten minutes before its own) on.
    expect(inFile("SELECT count(*) AS n, min(at) AS first FROM tw_rollups WHERE step = 60000")).toEqual([
      { n: 11, first: minuteOf(clock.t) - 11 * MINUTE_MS },
    ]);
    rollups.add("jobs.completed", "late");
    clock.advance(11 * MINUTE_MS);
    // 12:04 … 12:14, and 12:15, whose minute is written (for its hour) and pruned at once.
    expect(rollups.flush()).toBe(12);
    // The minutes are gone; their hour is kept, with the last minute's count too.
    expect(inFile("SELECT step, label, count FROM tw_rollups ORDER BY label")).toEqual([
      { step: HOUR_MS, label: "email", count: 15 },
      { step: HOUR_MS, label: "late", count: 1 },
    ]);
    // Past the hours' retention: a minute gathered then is dropped unwritten, and the hour pruned.
    rollups.add("jobs.completed", "stale");
    clock.advance(3 * HOUR_MS);
    expect(rollups.flush()).toBe(2);
    expect(inFile("SELECT count(*) AS n FROM tw_rollups")).toEqual([{ n: 0 }]);
    store.close();
  });

  it("refuses a retention under a minute, and an hours' retention under the minutes'", () => {
    const { store } = fixture();
    expect(invalidArgument(() => new Rollups(store, { retentionMs: 1000 })).message).toMatch(/retentionMs/);
    expect(
      invalidArgument(() => new Rollups(store, { retentionMs: 2 * HOUR_MS, hourRetentionMs: HOUR_MS }))
        .message,
    ).toMatch(/^hourRetentionMs/);
    store.close();
  });

  it("answers percentiles of merged minutes within the stated error of the true value of their rank", () => {
    const { store } = fixture();
    const duration = fc.oneof(
      fc.double({ min: MIN_MS * 1.0001, max: 1e7, noNaN: true }),
      fc.integer({ min: 1, max: 600_000 }),
    );
    // Each value lands in one of 5 minutes; a flush may come after any observation.
    const step = fc.record({ ms: duration, minute: fc.nat(4), flush: fc.boolean() });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 200 }), (steps) => {
        store.db.exec("DELETE FROM tw_rollups");
        const clock = new ManualClock(Date.UTC(2026, 0, 1, 0, 0, 0));
        const start = clock.t;
        const rollups = new Rollups(store, { now: clock.now });
        for (const s of steps) {
          clock.t = start + s.minute * MINUTE_MS + 1;
          rollups.observe("jobs.run", "t", s.ms);
          if (s.flush) rollups.flush();
        }
        const rows = rollups.read("jobs.run", start, start + 5 * MINUTE_MS);
        const whole = rows.reduce((h, r) => merge(h, r.hist!), emptyHistogram());
        const values = steps.map((s) => s.ms);
        expect(whole.count).toBe(values.length);
        expect(whole.min).toBe(Math.min(...values));
        expect(whole.max).toBe(Math.max(...values));
        for (const q of [0.5, 0.9, 0.95, 0.99, 1]) {
          const truth = trueQuantile(values, q);
          const got = quantile(whole, q)!;
          expect(Math.abs(got - truth) / truth).toBeLessThanOrEqual(RELATIVE_ERROR + 1e-9);
        }
      }),
      { numRuns: 150 },
    );
    store.close();
  });

  it("merges histograms the same whatever the order or grouping", () => {
    const ms = fc.double({ min: 0, max: 1e8, noNaN: true });
    fc.assert(
      fc.property(fc.array(ms, { maxLength: 60 }), fc.array(ms, { maxLength: 60 }), (a, b) => {
        const ha = emptyHistogram();
        const hb = emptyHistogram();
        const both = emptyHistogram();
        for (const v of a) observe(ha, v);
        for (const v of b) observe(hb, v);
        for (const v of [...b, ...a]) observe(both, v);
        const ab = merge(merge(emptyHistogram(), ha), hb);
        const ba = merge(merge(emptyHistogram(), hb), ha);
        for (const h of [ab, ba]) {
          expect(h.count).toBe(both.count);
          expect(new Map([...h.buckets].sort())).toEqual(new Map([...both.buckets].sort()));
          expect(h.min).toBe(both.min);
          expect(h.max).toBe(both.max);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("historyOf", () => {
  it("refuses an unknown series, range or label, naming the parameter", () => {
    const { rollups, store } = fixture();
    expect(invalidArgument(() => historyOf(rollups, {})).message).toMatch(
      /^series: must be one of jobs\.completed/,
    );
    expect(invalidArgument(() => historyOf(rollups, { series: "jobs.nope" })).message).toMatch(/^series/);
    expect(invalidArgument(() => historyOf(rollups, { series: ["jobs.run"] })).message).toMatch(/^series/);
    expect(invalidArgument(() => historyOf(rollups, { series: "toString" })).message).toMatch(/^series/);
    expect(invalidArgument(() => historyOf(rollups, { series: "jobs.run", range: "7w" })).message).toMatch(
      /^range: must be one of 1h, 24h, 7d, 30d, got "7w"/,
    );
    expect(
      invalidArgument(() => historyOf(rollups, { series: "jobs.run", label: "x".repeat(201) })).message,
    ).toMatch(/^label/);
    store.close();
  });

  it("shapes a counted series as a line per label over every minute of the range, the quietest folded into other", () => {
    const { clock, rollups, store } = fixture();
    const now = clock.t;
    for (let i = 0; i < MAX_LINES + 2; i++) rollups.add("jobs.completed", `type-${i}`, 100 - i);
    clock.advance(-30 * MINUTE_MS);
    rollups.add("jobs.completed", "type-0", 7);
    rollups.flush();
    const h = historyOf(rollups, { series: "jobs.completed", range: "1h" }, now);
    expect(h.times).toHaveLength(60);
    expect(h.times.at(-1)).toBe(minuteOf(now));
    expect(h.lines.map((l) => l.label)).toEqual([
      ...Array.from({ length: MAX_LINES - 1 }, (_, i) => `type-${i}`),
      "other",
    ]);
    expect(h.lines[0]!.values.at(-1)).toBe(100);
    expect(h.lines[0]!.values.at(-31)).toBe(7);
    expect(h.lines.at(-1)!.values.at(-1)).toBe(93 + 92 + 91);
    expect(h.summary.count).toBe(7 + [...Array(MAX_LINES + 2).keys()].reduce((a, i) => a + 100 - i, 0));
    expect(historyOf(rollups, { series: "jobs.completed", range: "24h" }, now).times).toHaveLength(1440);
    store.close();
  });

  it("shapes a latency series as p50/p95/p99 per minute over every label, null where nothing ran", () => {
    const { clock, rollups, store } = fixture();
    for (let ms = 1; ms <= 100; ms++) rollups.observe("jobs.run", ms % 2 ? "a" : "b", ms);
    const h = historyOf(rollups, { series: "jobs.run" }, clock.t);
    expect(h.lines.map((l) => l.label)).toEqual(["p50", "p95", "p99"]);
    expect(h.lines[0]!.values.slice(0, -1).every((v) => v === null)).toBe(true);
    const [p50, p95, p99] = h.lines.map((l) => l.values.at(-1)!);
    expect(Math.abs(p50! - 50) / 50).toBeLessThanOrEqual(RELATIVE_ERROR);
    expect(Math.abs(p95! - 95) / 95).toBeLessThanOrEqual(RELATIVE_ERROR);
    expect(Math.abs(p99! - 99) / 99).toBeLessThanOrEqual(RELATIVE_ERROR);
    expect(h.count.at(-1)).toBe(100);
    expect(h.summary).toMatchObject({ count: 100, max: 100 });
    expect(historyOf(rollups, { series: "jobs.run", label: "a" }, clock.t).count.at(-1)).toBe(50);
    store.close();
  });

  it("answers 7d and 30d from the hour rows, flushed or not, one value per hour", () => {
    const { clock, rollups, store } = fixture();
    const now = clock.t;
    rollups.add("jobs.completed", "email", 2);
    rollups.observe("jobs.run", "email", 10);
    clock.advance(-3 * HOUR_MS + 5 * MINUTE_MS);
    rollups.add("jobs.completed", "email", 3);
    clock.advance(MINUTE_MS);
    rollups.add("jobs.completed", "email", 4);
    rollups.observe("jobs.run", "email", 1000);
    rollups.flush();
    clock.t = now;
    const week = historyOf(rollups, { series: "jobs.completed", range: "7d" }, now);
    expect(week).toMatchObject({ stepMs: HOUR_MS, range: "7d" });
    expect(week.times).toHaveLength(168);
    expect(week.times.at(-1)).toBe(now - (now % HOUR_MS));
    expect(week.lines[0]!.values.slice(-4)).toEqual([7, 0, 0, 2]);
    const month = historyOf(rollups, { series: "jobs.run", range: "30d" }, now);
    expect(month.times).toHaveLength(720);
    expect(month.summary).toMatchObject({ count: 2, max: 1000 });
    expect(month.count.slice(-4)).toEqual([1, 0, 0, 1]);
    store.close();
  });
});

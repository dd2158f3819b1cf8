/**
 * GET /v1/history against a real daemon on 127.0.0.1: jobs its worker ran
 * and changes pushed to and pulled from it over HTTP show in the series at
 * once (the unflushed minute), are in the SQLite file after a stop, and are
 * served again by a daemon started anew on that file; bad input is a 400
 * naming the parameter, a missing token a 401.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Daemon, DaemonOptions } from "../src/daemon/daemon.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { useTempDirs } from "./helpers.js";
import {
  HISTORY_ADMIN,
  HISTORY_READER,
  runJobs,
  startHistoryDaemon,
  writeHistoryTokens,
} from "./history-helpers.js";
import { openItems } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-history-http-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const ADMIN = HISTORY_ADMIN;
const READER = HISTORY_READER;
const tokens = writeHistoryTokens;

async function daemon(dbPath: string, tokensFile: string, more: DaemonOptions = {}): Promise<Daemon> {
  const d = await startHistoryDaemon(dbPath, tokensFile, more);
  cleanup.push(() => d.stop());
  return d;
}

// biome-ignore lint/suspicious/noExplicitAny: the tests read whatever JSON the hub answered
async function get(url: string, path: string, token?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json() };
}

/** A counted series' total per label over the range. */
async function totals(url: string, series: string, range = "1h"): Promise<Record<string, number>> {
  const { status, body } = await get(url, `/v1/history?series=${series}&range=${range}`, READER);
  expect(status).toBe(200);
  return Object.fromEntries(
    (body.lines as Array<{ label: string; values: number[] }>).map((l) => [
      l.label,
      l.values.reduce((a, b) => a + b, 0),
    ]),
  );
}

describe("GET /v1/history", () => {
  it("shows jobs run and changes moved at once, keeps them in the file at stop, and serves them after a restart", async () => {
    const dir = tempDir();
    const dbPath = join(dir, "hub.db");
    const tokensFile = tokens(dir);
    let d = await daemon(dbPath, tokensFile);
    await runJobs(d, 6, 2);

    const [a, b] = [openItems(dir, "a"), openItems(dir, "b")];
    cleanup.push(() => a.close());
    cleanup.push(() => b.close());
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    a.store.write(() => {
      for (let i = 1; i <= 20; i++) insert.run(i, `a${i}`, i);
    });
    for (const [replica, expected] of [
      [a, { pushed: 20 }],
      [b, { pulled: 20 }],
    ] as const) {
      const t = new HttpTransport(d.url, { token: ADMIN });
      await expect(new SyncManager(replica, t, { buckets: ["default"] }).syncOnce()).resolves.toMatchObject(
        expected,
      );
      await t.close();
    }

    const expectHistory = async () => {
      // The worker settles a batch and then emits: the counts may trail the file by a turn.
      await expect
        .poll(() => totals(d.url, "jobs.completed"), { timeout: 10_000 })
        .toMatchObject({ email: 6 });
      expect(await totals(d.url, "jobs.failed")).toEqual({ flaky: 2 });
      expect(await totals(d.url, "changes.pushed")).toEqual({ hub: 20 });
      expect(await totals(d.url, "changes.pulled", "24h")).toEqual({ hub: 20 });
      for (const series of ["jobs.run", "jobs.wait"]) {
        const { body } = await get(d.url, `/v1/history?series=${series}&label=email`, READER);
        expect(body).toMatchObject({ kind: "latency", labels: ["email"], summary: { count: 6 } });
        expect(body.lines.map((l: { label: string }) => l.label)).toEqual(["p50", "p95", "p99"]);
        const drawn = body.lines[2].values.filter((v: number | null) => v !== null);
        expect(drawn.length).toBeGreaterThan(0);
        expect(drawn.every((v: number) => v >= 0 && v < 20_000)).toBe(true);
      }
    };
    await expectHistory();

    await d.stop();
    const file = new Database(dbPath, { readonly: true });
    const stored = file
      .prepare(
        "SELECT series, label, sum(count) AS n FROM tw_rollups WHERE step = 60000 GROUP BY series, label ORDER BY series, label",
      )
      .all();
    file.close();
    expect(stored).toEqual(
      expect.arrayContaining([
        { series: "changes.pulled", label: "hub", n: 20 },
        { series: "changes.pushed", label: "hub", n: 20 },
        { series: "jobs.completed", label: "email", n: 6 },
        { series: "jobs.failed", label: "flaky", n: 2 },
        { series: "jobs.run", label: "email", n: 6 },
        { series: "jobs.wait", label: "email", n: 6 },
      ]),
    );

    d = await daemon(dbPath, tokensFile);
    await expectHistory();
  });

  it("counts what this daemon's SyncBucket jobs pushed to a peer, and the cycle's time, by peer", async () => {
    const dir = tempDir();
    const tokensFile = tokens(dir);
    const [aDb, bDb] = ["a", "b"].map((name) => {
      const r = openItems(dir, name);
      r.close();
      return join(dir, `${name}.db`);
    });
    const b = await daemon(bDb!, tokensFile);
    const a = await daemon(aDb!, tokensFile, { syncIntervalMs: 500, pingIntervalMs: 3_600_000 });
    const rows = new Database(aDb!);
    rows.pragma("busy_timeout = 10000");
    rows.exec("INSERT INTO items VALUES (1, 'x', 1), (2, 'y', 2)");
    rows.close();
    a.peers.upsert({ id: "b", address: b.url, buckets: ["default"], token: ADMIN });
    await expect
      .poll(() => totals(a.url, "changes.pushed"), { timeout: 30_000, interval: 100 })
      .toEqual({ sync: 2 });
    expect(await totals(b.url, "changes.pushed")).toEqual({ hub: 2 });
    const { body } = await get(a.url, "/v1/history?series=sync.cycle", READER);
    expect(body.labels).toEqual(["b"]);
    expect(body.summary.count).toBeGreaterThanOrEqual(1);
  });

  it("refuses bad input with a 400 naming the parameter, and a request without a token with a 401", async () => {
    const dir = tempDir();
    const d = await daemon(join(dir, "hub.db"), tokens(dir));
    const cases: Array<[string, RegExp]> = [
      ["/v1/history", /^series: must be one of jobs\.completed, jobs\.failed/],
      ["/v1/history?series=jobs.nope", /^series: must be one of/],
      ["/v1/history?series=jobs.run&series=jobs.wait", /^series: must be one of/],
      ["/v1/history?series=__proto__", /^series: must be one of/],
      ["/v1/history?series=jobs.run&range=1y", /^range: must be one of 1h, 24h, 7d, 30d, got "1y"/],
      [`/v1/history?series=jobs.run&label=${"x".repeat(201)}`, /^label: must be/],
    ];
    for (const [path, message] of cases) {
      const { status, body } = await get(d.url, path, READER);
      expect([path, status, body.error.code]).toEqual([path, 400, "ERR_INVALID_ARGUMENT"]);
      expect(body.error.message).toMatch(message);
    }
    const anonymous = await get(d.url, "/v1/history?series=jobs.run");
    expect([anonymous.status, anonymous.body.error.code]).toEqual([401, "ERR_UNAUTHORIZED"]);
    const ok = await get(d.url, "/v1/history?series=sync.cycle&range=24h", READER);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      series: "sync.cycle",
      range: "24h",
      stepMs: 60_000,
      summary: { count: 0 },
    });
    expect(ok.body.times).toHaveLength(1440);
    const month = await get(d.url, "/v1/history?series=jobs.completed&range=30d", READER);
    expect(month.body).toMatchObject({ range: "30d", stepMs: 3_600_000 });
    expect(month.body.times).toHaveLength(720);
  });
});

/**
 * The recorder (src/history/recorder.ts) wired to a real Worker on a SQLite
 * queue and a real Hub: each attempt counted by type with its run and wait
 * time, hub pushes and pulls and SyncBucket cycles counted by side, written
 * by the flush timer (not per job), a flush that meets another program's
 * write lock logged and retried by the next tick, and `stop` writing the rest
 * once, after which nothing more is counted.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { startHistory } from "../src/history/recorder.js";
import type { Logger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import { UnrecoverableError, Worker } from "../src/queue/worker.js";
import { FULL_SCOPE } from "../src/scope.js";
import { useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-history-rec-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function quietLogger() {
  const lines: string[] = [];
  const log = (_obj: unknown, msg?: string) => lines.push(String(msg));
  return { logger: { debug: log, error: log, info: log, warn: log } as unknown as Logger, lines };
}

describe("startHistory", () => {
  it("counts a worker's attempts and a hub's transfers, written by the flush timer and once more at stop", async () => {
    const dir = tempDir();
    const hub = hubOn(dir);
    const store = hub.replica.store;
    cleanup.push(() => hub.replica.close());
    const queue = new Queue(store);
    const worker = new Worker(
      queue,
      {
        ok: async () => {},
        bad: () => {
          throw new UnrecoverableError("no");
        },
      },
      { concurrency: 4, pollIntervalMs: 10 },
    );
    const { logger } = quietLogger();
    const history = startHistory({ store, worker, hub, logger, flushIntervalMs: 50 });
    cleanup.push(() => history.stop());
    for (let i = 0; i < 5; i++) queue.add("ok", {}, { runAt: Date.now() - 1000 });
    queue.add("bad", {}, { maxAttempts: 1 });
    worker.start();
    cleanup.push(() => worker.stop());

    // A client pushes 3 rows and another pulls them, through the Hub itself.
    const client = openItems(dir, "client");
    cleanup.push(() => client.close());
    client.store.db.exec("INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)");
    const { changes } = client.changesSince("0");
    hub.push({ nodeId: "client", cursor: "3", changes }, FULL_SCOPE);
    hub.pull({ nodeId: "other", cursor: "0", buckets: ["default"], limit: 100 }, FULL_SCOPE);
    history.synced("peer-b", { pushed: 2, pulled: 7, applied: 7, durationMs: 42 });

    const file = new Database(join(dir, "hub.db"), { readonly: true });
    cleanup.push(() => file.close());
    const stored = () =>
      Object.fromEntries(
        (
          file
            .prepare(
              "SELECT series || ':' || label AS k, sum(count) AS n FROM tw_rollups WHERE step = 60000 GROUP BY k",
            )
            .all() as Array<{ k: string; n: number }>
        ).map((r) => [r.k, r.n]),
      );
    const expected = {
      "jobs.completed:ok": 5,
      "jobs.failed:bad": 1,
      "jobs.run:ok": 5,
      "jobs.run:bad": 1,
      "jobs.wait:ok": 5,
      "jobs.wait:bad": 1,
      "changes.pushed:hub": 3,
      "changes.pulled:hub": 3,
      "changes.pushed:sync": 2,
      "changes.pulled:sync": 7,
      "sync.cycle:peer-b": 1,
    };
    // Written by the timer while everything runs: no stop needed.
    await waitFor(
      () => JSON.stringify(stored()) === JSON.stringify({ ...stored(), ...expected }),
      "a flush",
      {
        timeoutMs: 10_000,
        intervalMs: 20,
      },
    );
    // The ok jobs were due a second before they were claimed.
    const wait = file
      .prepare("SELECT min FROM tw_rollups WHERE series = 'jobs.wait' AND label = 'ok'")
      .pluck()
      .all() as number[];
    expect(Math.min(...wait)).toBeGreaterThanOrEqual(1000);

    await worker.stop();
    history.stop();
    history.stop();
    // Stopped: nothing more is counted, and what was is in the file once.
    history.synced("peer-b", { pushed: 100, pulled: 0, applied: 0, durationMs: 1 });
    hub.pull({ nodeId: "late", cursor: "0", buckets: ["default"], limit: 100 }, FULL_SCOPE);
    expect(stored()).toEqual(expected);
    expect(history.rollups.pendingMinutes).toBe(0);
  });

  it("logs a flush that meets another program's write lock, and writes it at the next tick", async () => {
    const dir = tempDir();
    const hub = hubOn(dir);
    const store = hub.replica.store;
    cleanup.push(() => hub.replica.close());
    store.setBusyWait(0, { attempts: 0 });
    const { logger, lines } = quietLogger();
    const history = startHistory({ store, hub, logger, flushIntervalMs: 30 });
    cleanup.push(() => history.stop());
    const locker = new Database(join(dir, "hub.db"));
    locker.exec("BEGIN IMMEDIATE");
    history.synced("peer-b", { pushed: 4, pulled: 0, applied: 0, durationMs: 5 });
    await waitFor(() => lines.some((l) => /database is locked/.test(l)), "a flush to meet the lock", {
      timeoutMs: 10_000,
    });
    expect(locker.prepare("SELECT count(*) FROM tw_rollups").pluck().get()).toBe(0);
    locker.exec("ROLLBACK");
    await waitFor(
      () =>
        locker
          .prepare("SELECT count(*) FROM tw_rollups WHERE series = 'changes.pushed' AND step = 60000")
          .pluck()
          .get() === 1,
      "the next tick to write",
      { timeoutMs: 10_000 },
    );
    locker.close();
  });
});

/**
 * Storage: page counts, and free pages given back to the file system after a
 * queue's cleanup, measured as the real size of the file on disk, in bounded
 * steps that leave the write lock free in between. A file without incremental
 * auto-vacuum is left alone until the operator converts it.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { startDaemon } from "../src/daemon/daemon.js";
import { createLogger } from "../src/log.js";
import { registry } from "../src/metrics.js";
import { Queue } from "../src/queue/queue.js";
import { convertToIncremental, reclaimFreePages, storageStats } from "../src/storage.js";
import { openStore, type Store } from "../src/store.js";
import { fileWithoutAutoVacuum, useTempDirs, waitFor } from "./helpers.js";

const tempDir = useTempDirs("tidewire-storage-");
const opened: Array<Store | Database.Database> = [];
afterEach(() => {
  for (const h of opened.splice(0).reverse()) h.close();
});

function open(path: string): Store {
  const store = openStore(path);
  opened.push(store);
  return store;
}

/** Fills a queue with ~12 MB of finished jobs and deletes them with the queue's own cleanup. */
function fillAndCleanUp(store: Store): void {
  fill(store, Date.now() - 60_000);
  expect(new Queue(store).cleanup({ olderThanMs: 1000 })).toBe(3000);
  store.checkpoint("TRUNCATE");
}

function fill(store: Store, finishedAt: number): void {
  const queue = new Queue(store);
  const blob = "x".repeat(4000);
  for (let batch = 0; batch < 30; batch++) {
    queue.addMany(Array.from({ length: 100 }, (_, i) => ({ type: "big", payload: { i, blob } })));
  }
  store.db.prepare("UPDATE tw_jobs SET state = 'completed', finished_at = ?").run(finishedAt);
}

const size = (path: string) => statSync(path).size;

describe("storage", () => {
  it("a new file is incremental; after cleanup the freed pages go back in bounded steps and the file shrinks", async () => {
    const path = join(tempDir(), "q.db");
    const store = open(path);
    fillAndCleanUp(store);
    const before = storageStats(store);
    expect(before.autoVacuum).toBe("incremental");
    expect(before.freePages).toBeGreaterThan(2000);
    expect(before.sizeBytes).toBe(before.pageSize * before.pageCount);
    const bytesBefore = size(path);
    expect(bytesBefore).toBe(before.sizeBytes); // the WAL was folded in: the stats are the file

    const result = await reclaimFreePages(store, { pagesPerStep: 200 });
    expect(result.stoppedBy).toBeNull();
    expect(result.pagesFreed).toBe(before.freePages);
    // Never more than 200 pages a step.
    expect(result.steps).toBeGreaterThanOrEqual(Math.ceil(before.freePages / 200));
    expect(result.after.freePages).toBe(0);
    // Pointer-map pages that only tracked the freed ones go too.
    expect(result.after.pageCount).toBeLessThanOrEqual(before.pageCount - before.freePages);
    store.checkpoint("TRUNCATE");
    const bytesAfter = size(path);
    expect(bytesAfter).toBe(result.after.sizeBytes);
    expect(bytesAfter).toBeLessThan(bytesBefore / 4);
    expect(await registry.metrics()).toMatch(/^tidewire_vacuum_pages_reclaimed_total [1-9]\d*$/m);
    console.log(
      `file ${bytesBefore} -> ${bytesAfter} bytes, ${result.pagesFreed} pages in ${result.steps} steps, longest ${result.longestStepMs.toFixed(1)} ms`,
    );
  });

  it("leaves the write lock free between steps: another connection writes while it runs", async () => {
    const path = join(tempDir(), "q.db");
    const store = open(path);
    fillAndCleanUp(store);
    const other = new Database(path);
    opened.push(other);
    other.pragma("busy_timeout = 0"); // a write that met the lock would fail at once
    other.exec("CREATE TABLE IF NOT EXISTS app (v INTEGER)");
    const insert = other.prepare("INSERT INTO app (v) VALUES (?)");
    let writes = 0;
    let running = true;
    const writer = (async () => {
      while (running) {
        insert.run(writes++);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const result = await reclaimFreePages(store, { pagesPerStep: 50, pauseMs: 2 });
    running = false;
    await writer;
    expect(result.stoppedBy).toBeNull();
    expect(result.steps).toBeGreaterThan(10);
    expect(writes).toBeGreaterThan(1);
    expect(other.prepare("SELECT count(*) FROM app").pluck().get()).toBe(writes);
  });

  it("stops at another program's lock, at the signal and at maxSteps, having freed what it did", async () => {
    const path = join(tempDir(), "q.db");
    const store = open(path);
    fillAndCleanUp(store);
    const free = storageStats(store).freePages;

    const steps = await reclaimFreePages(store, { pagesPerStep: 10, maxSteps: 3, pauseMs: 0 });
    expect(steps).toMatchObject({ steps: 3, pagesFreed: 30, stoppedBy: "maxSteps" });
    expect(storageStats(store).freePages).toBe(free - 30);

    const aborted = new AbortController();
    aborted.abort();
    const signal = await reclaimFreePages(store, { signal: aborted.signal });
    expect(signal).toMatchObject({ steps: 0, pagesFreed: 0, stoppedBy: "signal" });

    store.setBusyWait(0, { attempts: 0 });
    const other = new Database(path);
    opened.push(other);
    other.exec("BEGIN IMMEDIATE");
    const busy = await reclaimFreePages(store);
    expect(busy).toMatchObject({ steps: 0, pagesFreed: 0, stoppedBy: "busy" });
    other.exec("ROLLBACK");
    expect(storageStats(store).freePages).toBe(free - 30);
  });

  it("refuses bad options and changes nothing", async () => {
    const store = open(join(tempDir(), "q.db"));
    fillAndCleanUp(store);
    const free = storageStats(store).freePages;
    for (const [options, argument] of [
      [{ pagesPerStep: 0 }, "pagesPerStep"],
      [{ pagesPerStep: 1.5 }, "pagesPerStep"],
      [{ maxStepMs: -1 }, "maxStepMs"],
      [{ pauseMs: "5" }, "pauseMs"],
      [{ maxSteps: 0 }, "maxSteps"],
      [{ signal: {} }, "signal"],
    ] as const) {
      await expect(reclaimFreePages(store, options as never)).rejects.toMatchObject({ argument });
    }
    expect(storageStats(store).freePages).toBe(free);
  });

  it("a file without auto-vacuum is left alone until converted; converting shrinks it and makes it incremental", async () => {
    const path = fileWithoutAutoVacuum(join(tempDir(), "old.db"));
    const store = open(path);
    fillAndCleanUp(store);
    const before = storageStats(store);
    expect(before.autoVacuum).toBe("none");
    const untouched = await reclaimFreePages(store);
    expect(untouched).toMatchObject({ steps: 0, pagesFreed: 0, stoppedBy: "auto_vacuum" });
    expect(size(path)).toBe(before.sizeBytes);

    const { after } = convertToIncremental(store);
    expect(after).toMatchObject({ autoVacuum: "incremental", freePages: 0 });
    expect(size(path)).toBe(after.sizeBytes);
    expect(size(path)).toBeLessThan(before.sizeBytes / 4);
    fillAndCleanUp(store);
    expect((await reclaimFreePages(store)).stoppedBy).toBeNull();
  });

  it("the daemon's cleanup job deletes old jobs and then shrinks the file", async () => {
    const path = join(tempDir(), "hub.db");
    const seed = openStore(path);
    fill(seed, Date.now() - 8 * 86_400_000); // past the default 7-day retention
    seed.close();
    const bytesBefore = size(path);
    const daemon = await startDaemon({
      dbPath: path,
      port: 0,
      insecure: true,
      logger: createLogger({ level: "silent" }),
    });
    try {
      const job = daemon.queue.add("tidewire.cleanup");
      await waitFor(() => daemon.queue.get(job.id)?.state === "completed", "the cleanup job", {
        timeoutMs: 20_000,
        intervalMs: 20,
      });
      expect(storageStats(daemon.store).freePages).toBe(0);
      await waitFor(() => size(path) < bytesBefore / 4, "the file to shrink", { timeoutMs: 5_000 });
    } finally {
      await daemon.stop();
    }
  });

  it("the daemon warns at start about a file cleanup cannot shrink, and its cleanup leaves that file's pages alone", async () => {
    const path = fileWithoutAutoVacuum(join(tempDir(), "old-hub.db"));
    const seed = openStore(path);
    fill(seed, Date.now() - 8 * 86_400_000);
    seed.close();
    const lines: Array<{ level: number; msg: string }> = [];
    const destination = { write: (line: string) => lines.push(JSON.parse(line)) };
    const daemon = await startDaemon({
      dbPath: path,
      port: 0,
      insecure: true,
      logger: createLogger({ level: "info", destination }),
    });
    try {
      const warning = lines.find((l) => /no incremental auto-vacuum/.test(l.msg));
      expect(warning?.level).toBe(40); // pino's warn
      expect(warning?.msg).toMatch(/tidewire vacuum .* --full/);
      const job = daemon.queue.add("tidewire.cleanup");
      await waitFor(() => daemon.queue.get(job.id)?.state === "completed", "the cleanup job", {
        timeoutMs: 20_000,
        intervalMs: 20,
      });
      // The jobs are gone; their pages stay on the freelist, for SQLite to reuse.
      expect(daemon.queue.count({ type: "big" })).toBe(0);
      expect(storageStats(daemon.store).freePages).toBeGreaterThan(2000);
    } finally {
      await daemon.stop();
    }
  });
});

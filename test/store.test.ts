/**
 * Store: pragmas, options, migrations, file checks, read-only mode, the WAL
 * checkpoint on close, and the busy retry. One process; the multi-process
 * behaviour is tested elsewhere.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Worker as Thread } from "node:worker_threads";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { metricsRegistry, Queue, SCHEMA_VERSION, StoreError } from "../src/index.js";
import { MIGRATIONS } from "../src/migrations.js";
import { openStore, type Store, type StoreOptions } from "../src/store.js";
import { invalidArgument, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs();
const open: Array<Store | Database.Database> = [];
afterEach(() => {
  for (const h of open.splice(0).reverse()) {
    if (h instanceof Database) {
      if (h.open) h.close();
    } else h.close();
  }
});

function track<T extends Store | Database.Database>(h: T): T {
  open.push(h);
  return h;
}

function dbPath(name = "t.db"): string {
  return join(tempDir(), name);
}

function pragma(store: Store, name: string): unknown {
  return store.db.pragma(name, { simple: true });
}

/** The busy-retry counter's value for one operation label. */
async function busyRetriesMetric(operation: string): Promise<number> {
  const metric = metricsRegistry.getSingleMetric("tidewire_sqlite_busy_retries_total");
  if (!metric) throw new Error("metric tidewire_sqlite_busy_retries_total is not registered");
  return (await metric.get()).values.find((v) => v.labels.operation === operation)?.value ?? 0;
}

describe("openStore pragmas", () => {
  it("applies tidewire's defaults on a new file", () => {
    const store = track(openStore(dbPath()));
    expect(pragma(store, "journal_mode")).toBe("wal");
    expect(pragma(store, "busy_timeout")).toBe(30_000);
    expect(pragma(store, "synchronous")).toBe(1); // NORMAL
    expect(pragma(store, "foreign_keys")).toBe(1);
    expect(pragma(store, "auto_vacuum")).toBe(2); // INCREMENTAL
    expect(pragma(store, "cache_size")).toBe(-64 * 1024); // 64 MiB, in KiB
  });

  it("lets options override every pragma", () => {
    const store = track(
      openStore(dbPath(), {
        journalMode: "DELETE",
        busyTimeoutMs: 1234,
        synchronous: "FULL",
        foreignKeys: false,
        autoVacuum: "FULL",
        cacheSizeKiB: 2048,
      }),
    );
    expect(pragma(store, "journal_mode")).toBe("delete");
    expect(pragma(store, "busy_timeout")).toBe(1234);
    expect(pragma(store, "synchronous")).toBe(2);
    expect(pragma(store, "foreign_keys")).toBe(0);
    expect(pragma(store, "auto_vacuum")).toBe(1);
    expect(pragma(store, "cache_size")).toBe(-2048);
  });

  it("treats an option given as undefined as not given", () => {
    const store = track(
      openStore(dbPath(), {
        journalMode: undefined,
        busyTimeoutMs: undefined,
        synchronous: undefined,
        autoVacuum: undefined,
        cacheSizeKiB: undefined,
        foreignKeys: undefined,
      }),
    );
    expect(pragma(store, "journal_mode")).toBe("wal");
    expect(pragma(store, "busy_timeout")).toBe(30_000);
    expect(pragma(store, "foreign_keys")).toBe(1);
  });

  it("sets auto_vacuum only on a new file", () => {
    const path = dbPath();
    openStore(path, { autoVacuum: "NONE" }).close();
    const store = track(openStore(path)); // default INCREMENTAL would need a VACUUM to take effect
    expect(pragma(store, "auto_vacuum")).toBe(0);
  });

  const bad: Array<[string, StoreOptions]> = [
    ["journalMode", { journalMode: "WALX" as never }],
    ["journalMode", { journalMode: "wal; DROP TABLE x" as never }],
    ["synchronous", { synchronous: "SOMETIMES" as never }],
    ["autoVacuum", { autoVacuum: "WEEKLY" as never }],
    ["busyTimeoutMs", { busyTimeoutMs: -1 }],
    ["busyTimeoutMs", { busyTimeoutMs: 1.5 }],
    ["busyTimeoutMs", { busyTimeoutMs: Number.NaN }],
    ["cacheSizeKiB", { cacheSizeKiB: 0 }],
    ["cacheSizeKiB", { cacheSizeKiB: -5 }],
    ["retry.attempts", { retry: { attempts: -1 } }],
    ["retry.attempts", { retry: { attempts: Number.NaN } }],
    ["retry.baseMs", { retry: { baseMs: -10 } }],
    ["retry.maxMs", { retry: { maxMs: Number.POSITIVE_INFINITY } }],
  ];
  it.each(bad)("refuses a bad %s and creates nothing", (argument, options) => {
    const dir = tempDir();
    const path = join(dir, "sub", "t.db");
    const err = invalidArgument(() => openStore(path, options));
    expect(err.argument).toBe(argument);
    expect(err.message).toContain(argument);
    expect(existsSync(join(dir, "sub"))).toBe(false);
  });

  it("refuses an empty path", () => {
    expect(invalidArgument(() => openStore("")).argument).toBe("path");
  });
});

describe("openStore migrations", () => {
  it("brings a new file to SCHEMA_VERSION with the queue and outbox tables", () => {
    const store = track(openStore(dbPath()));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS[MIGRATIONS.length - 1]!.version);
    expect(pragma(store, "user_version")).toBe(SCHEMA_VERSION);
    const tables = store.db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .pluck()
      .all();
    expect(tables).toEqual(expect.arrayContaining(["tw_jobs", "tw_periodic", "tw_outbox"]));
  });

  it("reopens an up-to-date file without re-running migrations, keeping its data", () => {
    const path = dbPath();
    const first = openStore(path);
    const job = new Queue(first).add("keep", { n: 1 });
    first.close();
    const again = track(openStore(path));
    expect(pragma(again, "user_version")).toBe(SCHEMA_VERSION);
    expect(new Queue(again).get(job.id)?.payload).toEqual({ n: 1 });
  });

  it("trusts user_version: a file already at SCHEMA_VERSION gets no migration run", () => {
    const path = dbPath();
    const raw = new Database(path);
    raw.pragma(`user_version = ${SCHEMA_VERSION}`);
    raw.exec("CREATE TABLE app (x)");
    raw.close();
    const store = track(openStore(path));
    const jobs = store.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'tw_jobs'").pluck().get();
    expect(jobs).toBe(0);
  });

  it("applies only the migrations after the recorded version", () => {
    const path = dbPath();
    const raw = new Database(path);
    raw.exec(MIGRATIONS[0]!.sql);
    raw.pragma(`user_version = ${MIGRATIONS[0]!.version}`);
    raw.close();
    // Re-running migration 1 would fail on "table tw_jobs already exists".
    const store = track(openStore(path));
    expect(pragma(store, "user_version")).toBe(SCHEMA_VERSION);
    const outbox = store.db
      .prepare("SELECT count(*) FROM sqlite_master WHERE name = 'tw_outbox'")
      .pluck()
      .get();
    expect(outbox).toBe(1);
  });

  it("leaves the application's own tables alone", () => {
    const path = dbPath();
    const raw = new Database(path);
    raw.exec(
      "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi')",
    );
    raw.close();
    const store = track(openStore(path));
    expect(store.db.prepare("SELECT body FROM notes").pluck().all()).toEqual(["hi"]);
    expect(pragma(store, "user_version")).toBe(SCHEMA_VERSION);
  });
});

describe("openStore files", () => {
  it("creates the parent folders", () => {
    const dir = tempDir();
    const path = join(dir, "a", "b", "c", "t.db");
    track(openStore(path));
    expect(statSync(join(dir, "a", "b", "c")).isDirectory()).toBe(true);
    expect(existsSync(path)).toBe(true);
  });

  const notDatabases: Array<[string, () => Buffer]> = [
    ["random bytes", () => randomBytes(8192)],
    ["a text file", () => Buffer.from("name,email\nada,ada@example.com\n")],
    ["a file shorter than the header", () => Buffer.from("SQLite")],
    [
      "a file with the SQLite header and garbage after it",
      () => Buffer.concat([Buffer.from("SQLite format 3\0", "latin1"), randomBytes(4080)]),
    ],
  ];
  it.each(notDatabases)("refuses %s with a clear error and leaves it byte-identical", (_, make) => {
    const dir = tempDir();
    const path = join(dir, "data.db");
    const content = make();
    writeFileSync(path, content);
    let error: unknown;
    try {
      track(openStore(path));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).code).toBe("ERR_NOT_A_DATABASE");
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toMatch(/not a SQLite database/);
    expect(readFileSync(path).equals(content)).toBe(true);
    expect(readdirSync(dir)).toEqual(["data.db"]); // no -wal, -shm or journal left beside it
  });

  it("a second open in the same process leaves the first's locks: another program cannot delete the WAL under it", () => {
    const path = dbPath();
    const first = track(openStore(path));
    first.write(() => first.db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"));
    // The hub's status thread does this: a read-only store on the file this process already has open.
    openStore(path, { readonly: true }).close();
    // Another program opens and closes the file. Had the first connection lost its locks, this one
    // would take itself for the last, checkpoint and delete the WAL the first still writes to.
    execFileSync("sqlite3", [path, "SELECT count(*) FROM t;"]);
    expect(existsSync(`${path}-wal`)).toBe(true);
    first.write(() => first.db.exec("INSERT INTO t VALUES (2)"));
    expect(execFileSync("sqlite3", [path, "SELECT count(*) FROM t;"], { encoding: "utf8" })).toBe("2\n");
  });

  it("refuses a folder given as the database path", () => {
    const dir = tempDir();
    expect(() => openStore(dir)).toThrow(StoreError);
  });

  it("refuses an existing empty file with a clear error, leaving it as it was", () => {
    const dir = tempDir();
    const path = join(dir, "data.db");
    writeFileSync(path, "");
    let error: unknown;
    try {
      track(openStore(path));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).code).toBe("ERR_EMPTY_FILE");
    expect((error as Error).message).toBe(
      `${path} is an empty file (0 bytes), not a database; delete it to start a new database there, or pass allowEmptyFile`,
    );
    expect(statSync(path).size).toBe(0);
    expect(readdirSync(dir)).toEqual(["data.db"]);
    expect(invalidArgument(() => openStore(path, { allowEmptyFile: "yes" as never })).argument).toBe(
      "allowEmptyFile",
    );
  });

  it("makes an existing empty file a new database with allowEmptyFile", () => {
    const path = dbPath();
    writeFileSync(path, "");
    const store = track(openStore(path, { allowEmptyFile: true }));
    expect(pragma(store, "user_version")).toBe(SCHEMA_VERSION);
  });

  it("opens a new WAL database whose pages are still all in its -wal file", () => {
    const path = dbPath();
    const first = track(openStore(path));
    new Queue(first).add("seen", { a: 1 });
    // Until a checkpoint the main file may hold nothing; the database is the -wal file.
    const second = track(openStore(path));
    expect(new Queue(second).list().map((j) => j.type)).toEqual(["seen"]);
  });
});

describe("read-only stores", () => {
  it("read but cannot write", () => {
    const path = dbPath();
    const rw = openStore(path);
    const id = new Queue(rw).add("seen", { a: 1 }).id;
    rw.close();

    const ro = track(openStore(path, { readonly: true }));
    expect(ro.readonly).toBe(true);
    const queue = new Queue(ro);
    expect(queue.get(id)?.payload).toEqual({ a: 1 });
    expect(() => queue.add("nope", {})).toThrow(/readonly/i);
    expect(() => ro.write(() => ro.db.exec("CREATE TABLE t (x)"))).toThrow(/readonly/i);
    expect(queue.stats().total).toBe(1);
    ro.close();
    const check = track(openStore(path));
    expect(new Queue(check).stats().total).toBe(1);
  });

  it("do not create a missing file or its folder", () => {
    const dir = tempDir();
    const path = join(dir, "missing", "t.db");
    expect(() => openStore(path, { readonly: true })).toThrow(StoreError);
    expect(existsSync(join(dir, "missing"))).toBe(false);
  });
});

describe("close", () => {
  it("checkpoints the WAL into the main file even while another connection keeps it open", () => {
    const path = dbPath();
    const store = openStore(path);
    // A second connection stops SQLite's own last-connection checkpoint from doing the work.
    const other = track(new Database(path));
    other.prepare("SELECT count(*) FROM tw_jobs").get();
    const queue = new Queue(store);
    queue.addMany(
      Array.from({ length: 500 }, (_, i) => ({ type: "t", payload: { i, pad: "x".repeat(100) } })),
    );
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(0);

    store.close();
    expect(store.isOpen).toBe(false);
    expect(!existsSync(`${path}-wal`) || statSync(`${path}-wal`).size === 0).toBe(true);

    // The main file is whole on its own: a copy without the WAL holds every job.
    const copy = join(tempDir(), "copy.db");
    copyFileSync(path, copy);
    const alone = track(new Database(copy, { readonly: true }));
    expect(alone.prepare("SELECT count(*) FROM tw_jobs").pluck().get()).toBe(500);
  });

  it("is idempotent", () => {
    const store = openStore(dbPath());
    store.close();
    expect(() => store.close()).not.toThrow();
  });
});

describe("checkpoint", () => {
  /** A store with WAL content and a second connection pinning a read snapshot mid-transaction. */
  function pinnedReader() {
    const path = dbPath();
    const store = track(openStore(path));
    const queue = new Queue(store);
    queue.addMany(Array.from({ length: 200 }, (_, i) => ({ type: "t", payload: { i } })));
    const reader = track(new Database(path));
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM tw_jobs").get();
    queue.addMany(Array.from({ length: 200 }, (_, i) => ({ type: "t", payload: { i } })));
    return { store, reader };
  }

  it("PASSIVE (the default) never waits for a reader, whatever the busy timeout", () => {
    const { store, reader } = pinnedReader();
    const started = Date.now();
    const result = store.checkpoint();
    // The busy timeout is 30 s: a checkpoint that waited for the reader would take that long.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.walFrames).toBeGreaterThan(0);
    expect(result.checkpointed).toBeLessThan(result.walFrames); // the reader still needs the rest
    reader.exec("COMMIT");
    const after = store.checkpoint();
    expect(after.checkpointed).toBe(after.walFrames);
  });

  it("TRUNCATE waits for a reader at most waitMs, then reports busy and leaves the WAL", () => {
    const { store, reader } = pinnedReader();
    const started = Date.now();
    const result = store.checkpoint("TRUNCATE", 200);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.busy).toBe(true);
    expect(pragma(store, "busy_timeout")).toBe(30_000); // restored afterwards
    reader.exec("COMMIT");
    expect(store.checkpoint("TRUNCATE").busy).toBe(false);
    expect(statSync(`${store.path}-wal`).size).toBe(0);
  });
});

describe("busy retry", () => {
  const fastRetry = { attempts: 3, baseMs: 1, maxMs: 4 };

  it("retries a write that meets a lock, counts it, and lets SQLITE_BUSY through once retries run out", async () => {
    const path = dbPath();
    const store = track(openStore(path, { busyTimeoutMs: 0, retry: fastRetry }));
    const locker = track(new Database(path));
    locker.exec("BEGIN IMMEDIATE");

    const before = await busyRetriesMetric("write");
    let error: unknown;
    try {
      store.write(() => store.db.exec("CREATE TABLE t (x)"));
    } catch (err) {
      error = err;
    }
    expect((error as { code?: string }).code).toBe("SQLITE_BUSY");
    expect(store.busyRetries).toBe(fastRetry.attempts);
    expect((await busyRetriesMetric("write")) - before).toBe(fastRetry.attempts);
    // A labelled call counts under its own operation, and only there.
    const [write, checkpoint] = [await busyRetriesMetric("write"), await busyRetriesMetric("checkpoint")];
    expect(() => store.retrying(() => store.db.exec("BEGIN IMMEDIATE"), "checkpoint")).toThrow(
      /locked|busy/i,
    );
    expect((await busyRetriesMetric("checkpoint")) - checkpoint).toBe(fastRetry.attempts);
    expect(await busyRetriesMetric("write")).toBe(write);

    locker.exec("COMMIT");
    store.write(() => store.db.exec("CREATE TABLE t (x)"));
    expect(store.busyRetries).toBe(2 * fastRetry.attempts); // no new retries once the lock is gone
    expect(store.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 't'").pluck().get()).toBe(1);
  });

  it("succeeds when the lock is released while it is retrying", async () => {
    const path = dbPath();
    // Budget: 10+20+40+80+160+200*5 ms ≈ 1.3 s of retries against a lock held for 250 ms.
    const store = track(
      openStore(path, { busyTimeoutMs: 0, retry: { attempts: 10, baseMs: 10, maxMs: 200 } }),
    );
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    const thread = new Thread(
      `const { parentPort, workerData } = require("node:worker_threads");
       const Database = require(workerData.driver);
       const db = new Database(workerData.path);
       db.exec("BEGIN IMMEDIATE");
       parentPort.postMessage("locked");
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.holdMs);
       db.exec("COMMIT");
       db.close();`,
      { eval: true, workerData: { driver, path, holdMs: 250 } },
    );
    const exited = new Promise<number>((resolve, reject) => {
      thread.on("exit", resolve);
      thread.on("error", reject);
    });
    await new Promise<void>((resolve, reject) => {
      thread.once("message", () => resolve());
      thread.once("error", reject);
    });

    const before = await busyRetriesMetric("queue.add");
    const queue = new Queue(store);
    const job = queue.add("after-the-lock", {}); // blocks in the retry loop until the thread commits
    expect(store.busyRetries).toBeGreaterThan(0);
    expect((await busyRetriesMetric("queue.add")) - before).toBe(store.busyRetries);
    expect(queue.get(job.id)?.type).toBe("after-the-lock");
    expect(await exited).toBe(0);
  });

  it("is not spent on errors other than busy", () => {
    const store = track(openStore(dbPath(), { retry: fastRetry }));
    expect(() => store.write(() => store.db.exec("INSERT INTO no_such_table VALUES (1)"))).toThrow(
      /no such table/,
    );
    expect(store.busyRetries).toBe(0);
  });

  // A keyless add is one autocommit INSERT, not a transaction of its own: inside the
  // caller's transaction it must still land or vanish with it, and its id must be the row's.
  it("a keyless add inside the caller's transaction commits and rolls back with it", () => {
    const store = track(openStore(dbPath(), { retry: fastRetry }));
    const queue = new Queue(store);
    expect(() =>
      store.write(() => {
        queue.add("gone", { n: 1 });
        throw new Error("the caller changes its mind");
      }),
    ).toThrow(/changes its mind/);
    expect(queue.list()).toEqual([]);
    const kept = store.write(() => queue.add("kept", { n: 2 }));
    expect(queue.list()).toEqual([kept]);
  });
});

describe("setBusyWait", () => {
  it("shortens the wait for another connection's lock, and refuses bad values changing nothing", () => {
    const path = dbPath();
    const store = track(openStore(path));
    const other = track(new Database(path));
    other.exec("BEGIN IMMEDIATE");
    store.setBusyWait(20, { attempts: 1, baseMs: 5, maxMs: 5 });
    expect(pragma(store, "busy_timeout")).toBe(20);
    const started = performance.now();
    expect(() => store.write(() => store.db.exec("CREATE TABLE t (x)"))).toThrow(/database is locked/);
    // Two waits of 20 ms and a 5 ms pause, not the default 30 s.
    expect(performance.now() - started).toBeLessThan(1_000);
    other.exec("ROLLBACK");

    expect(invalidArgument(() => store.setBusyWait(-1)).argument).toBe("busyTimeoutMs");
    expect(invalidArgument(() => store.setBusyWait(10, { attempts: Number.NaN })).argument).toBe(
      "retry.attempts",
    );
    expect(pragma(store, "busy_timeout")).toBe(20);
    expect(store.retry).toEqual({ attempts: 1, baseMs: 5, maxMs: 5 });
  });
});

/**
 * The full push as one atomic copy (issue 14, parts 2 and 4), against real
 * targets: a reader of the target in another process, looping during a
 * --resync and during a full push after a schema change, only ever sees
 * the old tables whole or the new ones whole (SQLite file, libSQL file,
 * PostgreSQL); the CLI SIGKILLed mid-copy leaves the old state, and the
 * rerun copies once; a crash after the target's commit is healed by the
 * key (one history row); an in-memory source goes by prepared batches.
 * Indexes, views and untracked tables: remote.wholecopy.test.ts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import { RemoteSync } from "../src/remote/index.js";
import { runNode, useTempDirs, waitFor } from "./helpers.js";
import {
  addRows,
  DATABASE_URL,
  dumpSqlite,
  dumpSqliteFile,
  historyRows,
  sourceReplica,
  usePostgres,
} from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const READER = fileURLToPath(new URL("./fixtures/remote-reader.ts", import.meta.url));
const CRASH = fileURLToPath(new URL("./fixtures/remote-crash.ts", import.meta.url));
const tempDir = useTempDirs("tidewire-fullpush-");
const pgs = usePostgres("tw_fullpush_");

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/remote/full-push.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function counts(db: Database.Database): string {
  const r = db
    .prepare("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM tags)")
    .raw(true)
    .get() as number[];
  return r.join(",");
}

interface Reading {
  seen: Record<string, number>;
  errors: string[];
}

/** The reader fixture in its own process, and a way to wait for a tuple of counts and to stop it. */
function startReader(args: string[]) {
  const run = runNode(["--import", "tsx", READER, ...args], ROOT);
  let out = "";
  run.child.stdout!.on("data", (d) => {
    out += d;
  });
  return {
    saw: (k: string) =>
      waitFor(() => out.includes(`seen ${k}\n`), `the reader to see ${k}`, { timeoutMs: 30_000 }),
    async stop(): Promise<Reading> {
      run.child.kill("SIGTERM");
      const r = await run;
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Reading;
    },
  };
}

/**
 * Three states, each pushed in full (an initial push, a --resync after more
 * rows, a full push after a new column) while the reader loops: it must
 * see nothing but those states, and no error.
 */
async function atomicAcrossFullPushes(target: string, reader: string[]): Promise<void> {
  const replica = sourceReplica(tempDir());
  const db = replica.store.db;
  addRows(db, 1, 20_000);
  const states = [counts(db)];
  const sync = new RemoteSync(replica, { target });
  try {
    expect((await sync.push()).mode).toBe("full");
    const r = startReader(reader);
    await r.saw(states[0]!);
    addRows(db, 20_001, 60_000);
    states.push(counts(db));
    expect((await sync.push({ resync: true })).mode).toBe("full");
    await r.saw(states[1]!);
    addRows(db, 60_001, 80_000);
    db.exec("ALTER TABLE tags ADD COLUMN color TEXT");
    replica.track("tags");
    states.push(counts(db));
    expect((await sync.push()).mode).toBe("full");
    await r.saw(states[2]!);
    const seen = await r.stop();
    expect(seen.errors).toEqual([]);
    expect(Object.keys(seen.seen).sort()).toEqual([...states].sort());
  } finally {
    await sync.close();
    replica.close();
  }
}

describe("a reader of the target sees the old state or the new, whole", () => {
  it("SQLite file", async () => {
    const mirror = join(tempDir(), "mirror.db");
    await atomicAcrossFullPushes(`sqlite:${mirror}`, ["sqlite", mirror, "items,tags"]);
  }, 120_000);

  it("libSQL file (@libsql/client)", async () => {
    const mirror = join(tempDir(), "mirror.db");
    await atomicAcrossFullPushes(`file:${mirror}`, ["sqlite", mirror, "items,tags"]);
  }, 120_000);

  it("PostgreSQL (skipped with a message when no server)", async (ctx) => {
    if (!pgs.reachable()) return ctx.skip();
    const schema = pgs.newSchema();
    await atomicAcrossFullPushes(`${DATABASE_URL}?schema=${schema}`, [
      "postgres",
      DATABASE_URL,
      "items,tags",
      schema,
    ]);
  }, 120_000);
});

function historyFull(path: string): string[] {
  return historyRows(path)
    .filter((h) => h.sync_mode === "full")
    .map((h) => h.sync_key);
}

describe("a crash during a full push", () => {
  it("SIGKILL of the CLI mid-copy leaves the old state whole; the rerun copies once and goes on incrementally", async () => {
    const dir = tempDir();
    const mirror = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    addRows(replica.store.db, 1, 1000);
    const sync = new RemoteSync(replica, { target: `sqlite:${mirror}` });
    await sync.push();
    await sync.close();
    const old = dumpSqliteFile(mirror);
    addRows(replica.store.db, 1001, 400_000);
    replica.close();
    const source = join(dir, "source.db");

    const run = runNode([CLI, "remote", "push", source, "--target", `sqlite:${mirror}`, "--resync"]);
    // Mid-copy: the target's transaction has spilled pages into its WAL.
    await waitFor(
      () => existsSync(`${mirror}-wal`) && statSync(`${mirror}-wal`).size > 1_000_000,
      "the copy",
      {
        timeoutMs: 60_000,
        intervalMs: 10,
      },
    );
    run.child.kill("SIGKILL");
    expect((await run).code).toBeNull();
    expect(dumpSqliteFile(mirror)).toEqual(old);
    expect(historyFull(mirror)).toHaveLength(1);

    const again = await runNode([CLI, "remote", "push", source, "--target", `sqlite:${mirror}`, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      mode: "full",
      retried: 1,
      duplicates: 0,
      mutations: 600_000,
    });
    expect(dumpSqliteFile(mirror)).toEqual(dumpSqliteFile(source));
    const keys = historyFull(mirror);
    expect(new Set(keys).size).toBe(2);
    const next = await runNode([CLI, "remote", "push", source, "--target", `sqlite:${mirror}`, "--json"]);
    expect(JSON.parse(next.stdout)).toMatchObject({ mode: "incremental", payloads: 0 });
  }, 120_000);

  it("a crash after the target's commit, before the cursor is saved: the rerun finds the key and copies nothing again", async () => {
    const dir = tempDir();
    const mirror = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    addRows(replica.store.db, 1, 500);
    replica.close();
    const child = await runNode(["--import", "tsx", CRASH, join(dir, "source.db"), mirror, "full"], ROOT);
    expect(child.code, child.stderr).toBeNull();
    const keys = historyFull(mirror);
    expect(keys).toHaveLength(1);

    const again = Replica.open(join(dir, "source.db"));
    const sync = new RemoteSync(again, { target: `sqlite:${mirror}` });
    try {
      expect(sync.cursor()).toBeUndefined();
      expect(sync.pending()).toBe(1);
      const r = await sync.push();
      expect(r).toMatchObject({ mode: "full", retried: 1, duplicates: 1, mutations: 0 });
      expect(sync.cursor()).toBeDefined();
      expect(historyFull(mirror)).toEqual(keys);
      expect(dumpSqliteFile(mirror)).toEqual(dumpSqlite(again.store.db));
      again.store.db.exec("UPDATE items SET name = 'late' WHERE id = 1");
      expect(await sync.push()).toMatchObject({ mode: "incremental", mutations: 1 });
      expect(dumpSqliteFile(mirror)).toEqual(dumpSqlite(again.store.db));
    } finally {
      await sync.close();
      again.close();
    }
  }, 60_000);
});

describe("an in-memory source", () => {
  it("is copied to a SQLite file by prepared multi-row INSERTs (there is no file to attach)", async () => {
    const replica = Replica.open(":memory:");
    replica.store.db.exec(
      "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, data BLOB)",
    );
    replica.store.db.exec(
      "CREATE TABLE tags (item INTEGER NOT NULL, tag TEXT NOT NULL, note TEXT, PRIMARY KEY (item, tag))",
    );
    replica.track("items");
    replica.track("tags");
    addRows(replica.store.db, 1, 1000);
    replica.store.db.prepare("INSERT INTO items VALUES (1001, 'blob', 1, 1e308 * 10, x'00ff')").run();
    const mirror = join(tempDir(), "mirror.db");
    const sync = new RemoteSync(replica, { target: `sqlite:${mirror}`, chunkRows: 300 });
    try {
      expect(await sync.push()).toMatchObject({ mode: "full", mutations: 1501 });
      expect(dumpSqliteFile(mirror)).toEqual(dumpSqlite(replica.store.db));
    } finally {
      await sync.close();
      replica.close();
    }
  });
});

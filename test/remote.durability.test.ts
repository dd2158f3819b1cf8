/**
 * What makes a remote push exactly once and durable: a crash between the
 * target's commit and the cursor save (a real SIGKILL in a child process),
 * an unreachable target and a failing one (error, cursor unchanged, payload
 * kept in the outbox, success on the next cycle), history retention, resync,
 * a schema change, sync keys, SQL literals, and refusal of bad input.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, metricsRegistry, Replica } from "../src/index.js";
import { openTarget, type PushProgress, RemoteError, RemoteSync, sqlLiteral } from "../src/remote/index.js";
import { makePayload, type Payload, type TableSchema } from "../src/remote/payload.js";
import type { SqlValue } from "../src/replica/values.js";
import { invalidArgument, useTempDirs } from "./helpers.js";
import { dumpSqlite, dumpSqliteFile, historyRows, runOps, sourceReplica } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-remote-durable-");
const CRASH = fileURLToPath(new URL("./fixtures/remote-crash.ts", import.meta.url));

describe("exactly once", () => {
  it("heals a crash between the target's commit and the cursor save: the key is found, nothing applies twice", async () => {
    const dir = tempDir();
    const target = join(dir, "mirror.db");
    let replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: 1.5, data: null }]);
    let sync = new RemoteSync(replica, { target: `sqlite:${target}` });
    await sync.push();
    const cursorBefore = sync.cursor();
    runOps(replica.store.db, [
      { kind: "put", id: 2, name: "cup", qty: 2n, price: null, data: null },
      { kind: "set", id: 1, name: "PEN" },
    ]);
    await sync.close();
    replica.close();

    const child = spawn(process.execPath, ["--import", "tsx", CRASH, join(dir, "source.db"), target], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const signal = await new Promise((r) => child.on("close", (_code, sig) => r(sig)));
    expect(signal, stderr).toBe("SIGKILL");

    // The target has the payload; the source's cursor does not know, and the outbox still holds it.
    const applied = historyRows(target).filter((h) => h.sync_mode === "incremental");
    expect(applied).toHaveLength(1);
    const t = new Database(target);
    t.exec(`CREATE TABLE writes (n INTEGER);
            CREATE TRIGGER w1 AFTER INSERT ON items BEGIN INSERT INTO writes VALUES (1); END;
            CREATE TRIGGER w2 AFTER UPDATE ON items BEGIN INSERT INTO writes VALUES (1); END;`);
    t.close();
    replica = Replica.open(join(dir, "source.db"));
    sync = new RemoteSync(replica, { target: `sqlite:${target}` });
    expect(sync.cursor()).toBe(cursorBefore);
    expect(sync.pending()).toBe(1);
    const r = await sync.push();
    expect(r).toMatchObject({ mode: "incremental", retried: 1, duplicates: 1, payloads: 1 });
    expect(sync.cursor()).not.toBe(cursorBefore);
    expect(sync.pending()).toBe(0);
    const check = new Database(target, { readonly: true });
    expect(check.prepare("SELECT count(*) AS n FROM writes").get()).toEqual({ n: 0 });
    check.close();
    expect(historyRows(target).filter((h) => h.sync_mode === "incremental")).toEqual(applied);
    expect(dumpSqliteFile(target)).toEqual(dumpSqlite(replica.store.db));
    await sync.close();
    replica.close();
  });

  it("gives the same key to the same mutations in any order, and another to another scope", () => {
    const t: TableSchema = {
      name: "t",
      key: ["id"],
      columns: [
        { name: "id", affinity: "INTEGER", untyped: false },
        { name: "v", affinity: "BLOB", untyped: true },
      ],
    };
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.bigInt({ min: 0n, max: 1000n }), { minLength: 1, maxLength: 20 }),
        fc.func(fc.boolean()),
        (ids, del) => {
          const ms: Payload["mutations"] = ids.map((id, i) =>
            del(i)
              ? { op: "delete", table: "t", key: [id] }
              : { op: "upsert", table: "t", row: [id, `v${id}`] },
          );
          const base = { mode: "incremental" as const, scope: "n:1-2", reset: [], tables: [t], cursor: "2" };
          const a = makePayload({ ...base, mutations: ms });
          const b = makePayload({ ...base, mutations: [...ms].reverse() });
          expect(b.key).toBe(a.key);
          expect(b.name).not.toBe(a.name);
          expect(makePayload({ ...base, scope: "n:2-3", mutations: ms }).key).not.toBe(a.key);
        },
      ),
      { numRuns: 50 },
    );
    // Storage classes are part of the key: INTEGER 1, REAL 1.0 and TEXT '1' differ.
    const keys = [1n, 1, "1"].map(
      (v) =>
        makePayload({
          mode: "incremental",
          scope: "s",
          reset: [],
          tables: [t],
          mutations: [{ op: "upsert", table: "t", row: [1n, v as SqlValue] }],
          cursor: null,
        }).key,
    );
    expect(new Set(keys).size).toBe(3);
  });
});

describe("durability", () => {
  it("an unreachable target: a clear error, the cursor unchanged, the payload kept in the outbox", async () => {
    const replica = sourceReplica(tempDir());
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "a", qty: null, price: null, data: null }]);
    const sync = new RemoteSync(replica, { target: "postgres://postgres:secret@127.0.0.1:1/test" });
    expect(sync.target.id).not.toContain("secret");
    const err = await sync.push().catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toMatch(/^cannot reach postgres:\/\/postgres@127\.0\.0\.1:1\/test: .*ECONNREFUSED/);
    expect(err.message).toMatch(
      /the cursor did not move and the payload stays in the outbox for the next cycle$/,
    );
    expect(err.message).not.toContain("secret");
    expect(sync.cursor()).toBeUndefined();
    expect(sync.pending()).toBe(1);
    await sync.close();
    replica.close();
  });

  it("a failing target: the cursor stays, the payload is kept and sent first next cycle, then all is current", async () => {
    const dir = tempDir();
    const target = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    const sync = new RemoteSync(replica, { target: `sqlite:${target}` });
    await sync.push();
    const cursor = sync.cursor();
    const t = new Database(target);
    t.exec("CREATE TRIGGER no BEFORE INSERT ON items BEGIN SELECT RAISE(ABORT, 'the target says no'); END");
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "a", qty: 1n, price: 0.5, data: null }]);
    await expect(sync.push()).rejects.toThrow(
      /mirror\.db refused payload \w+: the target says no \(SQLITE_CONSTRAINT_TRIGGER\); the cursor did not move/,
    );
    expect(sync.cursor()).toBe(cursor);
    expect(sync.pending()).toBe(1);
    runOps(replica.store.db, [{ kind: "put", id: 2, name: "b", qty: 2n, price: null, data: null }]);
    t.exec("DROP TRIGGER no");
    t.close();
    const r = await sync.push();
    expect(r).toMatchObject({ retried: 1, payloads: 2, duplicates: 0 });
    expect(sync.pending()).toBe(0);
    expect(dumpSqliteFile(target)).toEqual(dumpSqlite(replica.store.db));
    await sync.close();
    replica.close();
  });

  it("keeps the last N history rows, resyncs on demand, and pushes in full after a schema change", async () => {
    const dir = tempDir();
    const target = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    const sync = new RemoteSync(replica, { target: `sqlite:${target}`, keepHistory: 2 });
    await sync.push();
    for (let i = 1; i <= 4; i++) {
      runOps(replica.store.db, [{ kind: "put", id: i, name: `n${i}`, qty: null, price: null, data: null }]);
      expect((await sync.push()).mode).toBe("incremental");
    }
    expect(historyRows(target)).toHaveLength(2);
    // A row only the target has disappears with a resync.
    const t = new Database(target);
    t.exec("INSERT INTO items (id, name) VALUES (99, 'stray')");
    t.close();
    expect((await sync.push({ resync: true })).mode).toBe("full");
    expect(dumpSqliteFile(target)).toEqual(dumpSqlite(replica.store.db));
    replica.store.db.exec("ALTER TABLE tags ADD COLUMN color TEXT");
    replica.track("tags");
    expect((await sync.push()).mode).toBe("full");
    const cols = new Database(target, { readonly: true });
    expect(
      (cols.prepare("SELECT name FROM pragma_table_info('tags')").pluck().all() as string[]).sort(),
    ).toEqual(["color", "item", "note", "tag"]);
    cols.close();
    await sync.close();
    replica.close();
  });

  it("refuses bad input and changes nothing", async () => {
    const replica = sourceReplica(tempDir());
    const bad: unknown[] = [
      { target: "ftp://example.com/x" },
      { target: "" },
      { target: "sqlite:" },
      { target: "d1:no such name" },
      { target: "sqlite:/tmp/x.db", d1: { local: true } },
      { target: "d1:DB", d1: { local: true, remote: true } },
      { target: "sqlite:/tmp/x.db", keepHistory: -1 },
      { target: "sqlite:/tmp/x.db", batchSize: 0 },
      { target: "sqlite:/tmp/x.db", buckets: [] },
      { target: { id: "x" } },
      null,
    ];
    for (const options of bad) invalidArgument(() => new RemoteSync(replica, options as never));
    const sync = new RemoteSync(replica, { target: `sqlite:${join(tempDir(), "m.db")}` });
    invalidArgument(() => sync.push({ resync: "yes" as never }));
    invalidArgument(() => sync.start({ intervalSeconds: -1 }));
    expect(replica.store.db.prepare("SELECT count(*) AS n FROM tw_outbox").get()).toEqual({ n: 0 });
    expect(replica.store.db.prepare("SELECT count(*) AS n FROM tw_cursors").get()).toEqual({ n: 0 });
    expect(new InvalidArgumentError("a", "b")).toBeInstanceOf(Error);
    await sync.close();
    replica.close();
  });
});

describe("targets, progress and metrics", () => {
  it("names targets without their secrets, and paths absolute", () => {
    expect(openTarget("libsql://db.example.com?authToken=s3cret").id).toBe("libsql://db.example.com");
    expect(openTarget("postgresql://u:s3cret@h:5432/db?schema=x").id).toBe(
      "postgresql://u@h:5432/db?schema=x",
    );
    expect(openTarget("sqlite:rel.db").id).toBe(`sqlite:${join(process.cwd(), "rel.db")}`);
    expect(openTarget("file:rel.db").id).toBe(`file:${join(process.cwd(), "rel.db")}`);
    expect(openTarget("d1:DB").id).toBe("d1:DB?local");
  });

  it("reports progress per table during a full push, and counts cycles by backend and status", async () => {
    const dir = tempDir();
    const replica = sourceReplica(dir);
    runOps(
      replica.store.db,
      Array.from({ length: 10 }, (_, i) => ({
        kind: "put" as const,
        id: i + 1,
        name: null,
        qty: null,
        price: null,
        data: null,
      })),
    );
    const progress: PushProgress[] = [];
    const sync = new RemoteSync(replica, {
      target: `sqlite:${join(dir, "m.db")}`,
      chunkRows: 4,
      onProgress: (p) => progress.push(p),
    });
    const before = await metricValue("tidewire_remote_sync_total", { backend: "sqlite", status: "success" });
    await sync.push();
    expect(progress).toEqual([
      { table: "items", rows: 0, total: 10 },
      { table: "items", rows: 4, total: 10 },
      { table: "items", rows: 8, total: 10 },
      { table: "items", rows: 10, total: 10 },
      { table: "tags", rows: 0, total: 0 },
    ]);
    expect(await metricValue("tidewire_remote_sync_total", { backend: "sqlite", status: "success" })).toBe(
      before + 1,
    );
    const last = await metricValue("tidewire_remote_sync_last_success_timestamp_seconds", {
      backend: "sqlite",
    });
    expect(Math.abs(last - Date.now() / 1000)).toBeLessThan(60);
    await sync.close();
    replica.close();
  });
});

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  const values = (await m?.get())?.values ?? [];
  const hit = values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return hit?.value ?? 0;
}

describe("sqlLiteral", () => {
  const db = new Database(":memory:");
  const read = db.prepare("SELECT typeof(v) AS t, quote(v) AS q, hex(v) AS h FROM (SELECT ? AS v)");
  const value: fc.Arbitrary<SqlValue> = fc.oneof(
    fc.constant(null),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.double({ noNaN: true }),
    fc.constantFrom(
      0,
      -0,
      1,
      1e21,
      5e-324,
      Number.MAX_VALUE,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ),
    fc.string({ unit: "binary" }).filter((s) => !/\p{Cs}/u.test(s)),
    fc.constantFrom("it's", "a\u0000b", "'", "", "\n"),
    fc.uint8Array({ maxLength: 16 }),
  );
  it("reads back as exactly the value, storage class included", () => {
    fc.assert(
      fc.property(value, (v) => {
        const literal = db.prepare(
          `SELECT typeof(v) AS t, quote(v) AS q, hex(v) AS h FROM (SELECT ${sqlLiteral(v)} AS v)`,
        );
        expect(literal.get()).toEqual(read.get(v));
      }),
      { numRuns: 2000 },
    );
  });
});

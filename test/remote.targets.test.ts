/**
 * Remote push against the real thing for every target: SQLite files,
 * @libsql/client on a local file, PostgreSQL (DATABASE_URL) and wrangler's
 * local D1. After random workloads of inserts, updates and deletes pushed in
 * rounds (a full push, then incremental ones), the target's rows equal the
 * source's, storage classes included.
 */
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTarget, RemoteSync } from "../src/index.js";
import { findWrangler } from "../src/remote/d1-target.js";
import { makePayload, type Payload, type TableSchema } from "../src/remote/payload.js";
import { useTempDirs } from "./helpers.js";
import {
  DATABASE_URL,
  dumpLibsql,
  dumpPostgres,
  dumpQuotedSqlite,
  dumpSqlite,
  dumpSqliteFile,
  postgresReachable,
  QUOTED,
  quotedDump,
  runOps,
  sourceReplica,
  workloadArb,
  wranglerProject,
  wranglerQuery,
} from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-remote-");

/** One upsert into items, as a full push would have created it. */
function probePayload(): Payload {
  const items: TableSchema = {
    name: "items",
    key: ["id"],
    columns: [
      { name: "id", affinity: "INTEGER", untyped: false },
      { name: "name", affinity: "TEXT", untyped: false },
      { name: "qty", affinity: "INTEGER", untyped: false },
      { name: "price", affinity: "REAL", untyped: false },
      { name: "data", affinity: "BLOB", untyped: false },
    ],
  };
  return makePayload({
    mode: "incremental",
    scope: "probe",
    reset: [],
    tables: [items],
    mutations: [{ op: "upsert", table: "items", row: [1000n, "probe", 1n, 0.5, null] }],
    cursor: null,
  });
}

describe("applying one payload twice", () => {
  it("applies it once on SQLite, libSQL and PostgreSQL: the second time is a duplicate", async () => {
    const dir = tempDir();
    const urls = [`sqlite:${join(dir, "a.db")}`, `file:${join(dir, "b.db")}`];
    const schema = `tw_test_${randomBytes(6).toString("hex")}`;
    if (await postgresReachable()) urls.push(`${DATABASE_URL}?schema=${schema}`);
    for (const url of urls) {
      const target = openTarget(url);
      try {
        const create = { ...probePayload(), mutations: [] };
        create.reset = create.tables;
        create.key = `${create.key}-create`;
        await target.apply(create, 0);
        const p = probePayload();
        expect(await target.apply(p, 0), url).toBe("applied");
        expect(await target.apply(p, 0), url).toBe("duplicate");
        expect(await target.apply({ ...p, name: "another name, same key" }, 0), url).toBe("duplicate");
      } finally {
        await target.close();
      }
    }
    if (urls.length === 3) {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      try {
        const n = await c.query(`SELECT count(*)::int AS n FROM "${schema}"._tidewire_sync_history`);
        expect(n.rows).toEqual([{ n: 2 }]);
      } finally {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await c.end();
      }
    }
  });
});

describe("remote push to a SQLite file", () => {
  it("mirrors random workloads exactly", async () => {
    await fc.assert(
      fc.asyncProperty(workloadArb, async (rounds) => {
        const dir = tempDir();
        const replica = sourceReplica(dir);
        const target = join(dir, "mirror.db");
        const sync = new RemoteSync(replica, { target: `sqlite:${target}`, batchSize: 7, chunkRows: 5 });
        try {
          const first = await sync.push();
          expect(first.mode).toBe("full");
          for (const ops of rounds) {
            runOps(replica.store.db, ops);
            const r = await sync.push();
            expect(r.mode).toBe("incremental");
            expect(dumpSqliteFile(target)).toEqual(dumpSqlite(replica.store.db));
          }
        } finally {
          await sync.close();
          replica.close();
        }
      }),
      { numRuns: 25 },
    );
  });
});

describe("remote push to libSQL (@libsql/client, file:)", () => {
  it("mirrors random workloads exactly", async () => {
    await fc.assert(
      fc.asyncProperty(workloadArb, async (rounds) => {
        const dir = tempDir();
        const replica = sourceReplica(dir);
        const url = `file:${join(dir, "libsql.db")}`;
        // Some rows before the first push, so the full push copies in several chunks.
        runOps(replica.store.db, rounds[0] ?? []);
        const sync = new RemoteSync(replica, { target: url, batchSize: 5, chunkRows: 4 });
        try {
          let first: Awaited<ReturnType<RemoteSync["push"]>> | null = null;
          for (const ops of rounds) {
            const r = await sync.push();
            first ??= r;
            expect(await dumpLibsql(url)).toEqual(dumpSqlite(replica.store.db));
            expect(r.mode).toBe(r === first ? "full" : "incremental");
            runOps(replica.store.db, ops);
          }
          await sync.push();
          expect(await dumpLibsql(url)).toEqual(dumpSqlite(replica.store.db));
        } finally {
          await sync.close();
          replica.close();
        }
      }),
      { numRuns: 15 },
    );
  });
});

describe("remote push to PostgreSQL", () => {
  let reachable = false;
  const schemas: string[] = [];
  let admin: pg.Client | null = null;
  beforeAll(async () => {
    reachable = await postgresReachable();
    if (reachable) {
      admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
    }
  });
  afterAll(async () => {
    for (const s of schemas) await admin?.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await admin?.end();
  });

  it("mirrors random workloads exactly, types mapped (skipped with a message when no server)", async (ctx) => {
    if (!reachable || !admin) {
      ctx.skip();
      return;
    }
    const client = admin;
    await fc.assert(
      fc.asyncProperty(workloadArb, async (rounds) => {
        const dir = tempDir();
        const schema = `tw_test_${randomBytes(6).toString("hex")}`;
        schemas.push(schema);
        const replica = sourceReplica(dir);
        const sync = new RemoteSync(replica, {
          target: `${DATABASE_URL}?schema=${schema}`,
          batchSize: 6,
          chunkRows: 4,
        });
        try {
          runOps(replica.store.db, rounds[0] ?? []);
          expect((await sync.push()).mode).toBe("full");
          expect(await dumpPostgres(client, schema)).toEqual(dumpSqlite(replica.store.db));
          for (const ops of rounds.slice(1)) {
            runOps(replica.store.db, ops);
            expect((await sync.push()).mode).toBe("incremental");
            expect(await dumpPostgres(client, schema)).toEqual(dumpSqlite(replica.store.db));
          }
        } finally {
          await sync.close();
          replica.close();
          await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        }
      }),
      { numRuns: 12 },
    );
    const cols = await client.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'items'`,
      [schemas[0]],
    );
    expect(cols.rows).toEqual([]); // dropped after each run
  });
});

describe("remote push to Cloudflare D1 (wrangler's local D1)", () => {
  const wrangler = findWrangler();
  it.skipIf(wrangler === null)(
    "mirrors a random workload exactly, and leaves no temporary file",
    async () => {
      const dir = tempDir();
      const config = wranglerProject(dir);
      const replica = sourceReplica(dir);
      const before = readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length;
      const [rounds] = fc.sample(workloadArb, { numRuns: 1, seed: 42 });
      const sync = new RemoteSync(replica, { target: "d1:DB", d1: { local: true, config }, chunkRows: 50 });
      try {
        runOps(replica.store.db, rounds![0] ?? []);
        expect((await sync.push()).mode).toBe("full");
        for (const ops of rounds!.slice(1, 3)) runOps(replica.store.db, ops);
        const r = await sync.push();
        expect(r.mode).toBe("incremental");
        const got = quotedDump(wranglerQuery(config, QUOTED) as Array<{ t: string; r: string }>);
        expect(got).toEqual(dumpQuotedSqlite(replica.store.db));
        // The history holds every payload's key, once: the full push is one.
        const history = wranglerQuery(
          config,
          "SELECT count(*) AS n, count(DISTINCT sync_key) AS k FROM _tidewire_sync_history",
        );
        expect(history).toEqual([{ n: r.payloads + 1, k: r.payloads + 1 }]);
        // The same payload again: D1 rolls the file back on the history key, and that is success.
        const d1 = openTarget("d1:DB", { d1: { local: true, config } });
        const p = probePayload();
        expect(await d1.apply(p, 0)).toBe("applied");
        expect(await d1.apply(p, 0)).toBe("duplicate");
        expect(wranglerQuery(config, "SELECT name FROM items WHERE id = 1000")).toEqual([{ name: "probe" }]);
      } finally {
        await sync.close();
        replica.close();
      }
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length).toBe(before);
    },
    120_000,
  );
  it.skipIf(wrangler === null)(
    "a failing wrangler: a clear error, the payload kept, no temporary file left",
    async () => {
      const dir = tempDir();
      const replica = sourceReplica(dir);
      const before = readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length;
      const sync = new RemoteSync(replica, { target: "d1:DB", d1: { config: join(dir, "missing.toml") } });
      try {
        await expect(sync.push()).rejects.toThrow(
          /^wrangler d1 execute DB failed for d1:DB\?local&config=.*missing\.toml: Could not read file: .*missing\.toml; the cursor did not move/,
        );
        expect(sync.pending()).toBe(1);
        expect(sync.cursor()).toBeUndefined();
      } finally {
        await sync.close();
        replica.close();
      }
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length).toBe(before);
    },
    60_000,
  );
  if (wrangler === null) console.warn("SKIPPED: D1 test, wrangler is not on PATH or in node_modules/.bin");
});

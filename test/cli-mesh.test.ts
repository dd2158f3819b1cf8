/**
 * `tidewire mesh` end to end: two processes on two databases written by the
 * sqlite3 shell sync through Redis alone; SIGTERM stops one cleanly with its
 * --json summary; exit statuses 1 (Redis unreachable) and 2 (usage).
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { type Run, runNode, sql, useTempDirs, waitFor } from "./helpers.js";
import { REDIS_UNFLUSHED_URL as REDIS_URL, redisReachable } from "./redis-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-mesh-");
let reachable = false;

beforeAll(async () => {
  if (!existsSync(join(ROOT, "dist/cli/mesh.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  reachable = await redisReachable();
});

async function replicaFile(dir: string, name: string): Promise<string> {
  const db = join(dir, `${name}.db`);
  sql(db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);");
  expect((await runNode([CLI, "init", db, "--table", "items"])).code).toBe(0);
  return db;
}

describe("tidewire mesh", { timeout: 180_000 }, () => {
  it("two processes sync through Redis; SIGTERM stops cleanly with a JSON summary", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const [a, b] = [await replicaFile(dir, "a"), await replicaFile(dir, "b")];
    const prefix = `twcli-${randomBytes(4).toString("hex")}`;
    const mesh = (db: string) =>
      runNode([CLI, "mesh", db, "--redis", REDIS_URL, "--prefix", prefix, "--json"]);
    const ra = mesh(a);
    const rb = mesh(b);
    sql(a, "INSERT INTO items VALUES (1, 'from a');");
    sql(b, "INSERT INTO items VALUES (2, 'from b');");
    const both = "1|from a\n2|from b\n";
    await waitFor(() => sql(a, "SELECT * FROM items ORDER BY id") === both, "a to get b's row", {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    await waitFor(() => sql(b, "SELECT * FROM items ORDER BY id") === both, "b to get a's row", {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    ra.child.kill("SIGTERM");
    rb.child.kill("SIGTERM");
    const [da, db] = (await Promise.all([ra, rb])) as [Run, Run];
    expect(da.code).toBe(0);
    expect(db.code).toBe(0);
    const summary = JSON.parse(da.stdout);
    expect(summary).toMatchObject({ ok: true, buckets: ["default"], published: 1, applied: 1, refused: 0 });
    expect(da.stderr).toMatch(/mesh: peer found/);
  });

  it("a member killed with SIGKILL while applying resumes after a restart: every row once, nothing lost", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const [a, b] = [await replicaFile(dir, "a"), await replicaFile(dir, "b")];
    const prefix = `twcli-${randomBytes(4).toString("hex")}`;
    const mesh = (db: string) => runNode([CLI, "mesh", db, "--redis", REDIS_URL, "--prefix", prefix]);
    // Enough rows that b is still applying when the kill lands, even on a loaded machine.
    const N = 200_000;
    sql(
      a,
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${N})
       INSERT INTO items SELECT i, 'row ' || i FROM n;`,
    );
    const ra = mesh(a);
    let rb = mesh(b);
    // Polled in-process: a sqlite3 shell per poll is too slow to catch b mid-way under load.
    const reader = new Database(b, { readonly: true, fileMustExist: true });
    const count = () => reader.prepare("SELECT count(*) FROM items").pluck().get() as number;
    await waitFor(() => count() > 0, "b to apply a first entry", { timeoutMs: 60_000, intervalMs: 5 });
    rb.child.kill("SIGKILL");
    await rb;
    const had = count();
    expect(had).toBeLessThan(N); // killed mid-way, not after the end
    rb = mesh(b);
    await waitFor(() => count() === N, `b to hold all ${N} rows after the restart`, {
      timeoutMs: 120_000,
      intervalMs: 50,
    });
    reader.close();
    /** Every row, in key order, hashed: equal digests mean equal tables. */
    const digest = (db: string) => {
      const d = new Database(db, { readonly: true });
      try {
        const hash = createHash("sha256");
        for (const r of d.prepare("SELECT id, name FROM items ORDER BY id").iterate())
          hash.update(JSON.stringify(r));
        return hash.digest("hex");
      } finally {
        d.close();
      }
    };
    expect(digest(b)).toBe(digest(a));
    ra.child.kill("SIGTERM");
    rb.child.kill("SIGTERM");
    expect(((await ra) as Run).code).toBe(0);
    expect(((await rb) as Run).code).toBe(0);
  });

  it("exits 1 when Redis is unreachable and 2 on a usage error, with one error line", async () => {
    const dir = tempDir();
    const db = await replicaFile(dir, "x");
    const down = await runNode([CLI, "mesh", db, "--redis", "redis://u:secret@127.0.0.1:1/0"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^tidewire: Redis at redis:\/\/u:\*\*\*@127\.0\.0\.1:1\/0 is unreachable/);
    expect(down.stderr).not.toMatch(/secret/);
    const usage = await runNode([CLI, "mesh", db, "--redis", REDIS_URL, "--max-len", "0"]);
    expect(usage.code).toBe(2);
    const noRedis = await runNode([CLI, "mesh", db]);
    expect(noRedis.code).toBe(2);
    const badUrl = await runNode([CLI, "mesh", db, "--redis", "http://x"]);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr.trim().split("\n")).toHaveLength(1);
  });
});

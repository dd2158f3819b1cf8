/**
 * `tidewire init` and `tidewire status`, run as the installed bin runs
 * (`node dist/cli/main.js`) on real files: output in both forms, exit 0/1/2,
 * one JSON document with --json, one error line without a stack trace, and
 * init's all-or-nothing tracking.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { CursorStore, openStore, Queue, Replica } from "../src/index.js";
import { type Run, runNode, sql, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-replica-");

function tidewire(args: string[]): Promise<Run> {
  return runNode([CLI, ...args]);
}

function oneErrorLine(run: Run, pattern: RegExp): void {
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(run.stderr).toMatch(/^tidewire: /);
  expect(run.stderr).toMatch(pattern);
}

beforeAll(() => {
  // `npm test` builds first; a lone `vitest run` may find no (or an older) build.
  if (!existsSync(join(ROOT, "dist/cli/status.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function appDb(): string {
  const path = join(tempDir(), "app.db");
  const store = openStore(path);
  store.db.exec(`
    CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
    CREATE TABLE orders (id TEXT PRIMARY KEY, item INTEGER, qty INTEGER);
    CREATE TABLE loose (a, b);
    INSERT INTO items VALUES (1, 'pen'), (2, 'cup');
  `);
  store.close();
  return path;
}

describe("tidewire init", () => {
  it("tracks tables in buckets, idempotently, and says so in text or JSON", async () => {
    const db = appDb();
    const text = await tidewire(["init", db, "--table", "items", "--table", "orders=sales"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^node [0-9a-f]{16}\n/);
    expect(text.stdout).toMatch(/tracking items in bucket default: key \(id\), 1 other column\n/);
    expect(text.stdout).toMatch(/tracking orders in bucket sales: key \(id\), 2 other columns/);
    const json = await tidewire(["init", db, "--table", "items", "--table", "orders=sales", "--json"]);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      ok: true,
      tables: [
        { table: "items", bucket: "default", key: ["id"], columns: ["name"] },
        { table: "orders", bucket: "sales", key: ["id"], columns: ["item", "qty"] },
      ],
    });
    const status = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect(status.log).toMatchObject({ entries: 4, rows: 2, lastSeq: 2 });
  });

  it("tracks nothing when one table cannot be tracked (exit 1)", async () => {
    const db = appDb();
    const run = await tidewire(["init", db, "--table", "items", "--table", "loose"]);
    expect(run.code).toBe(1);
    oneErrorLine(run, /table "loose" cannot be tracked: it has no explicit PRIMARY KEY/);
    const status = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect(status.tables).toEqual([]);
  });

  it("reports usage errors (exit 2) and a missing database (exit 1)", async () => {
    const db = appDb();
    const none = await tidewire(["init", db]);
    expect(none.code).toBe(2);
    oneErrorLine(none, /--table/);
    const empty = await tidewire(["init", db, "--table", "items=", "--json"]);
    expect(empty.code).toBe(2);
    expect(JSON.parse(empty.stdout)).toMatchObject({ ok: false, error: { code: "ERR_USAGE" } });
    const missing = await tidewire(["init", join(tempDir(), "nope.db"), "--table", "items", "--json"]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, error: { code: "ERR_NO_DATABASE" } });
    oneErrorLine(missing, /no database at/);
  });
});

describe("tidewire status", () => {
  it("shows node, tables by bucket, log, cursors and queues", async () => {
    const db = appDb();
    expect((await tidewire(["init", db, "--table", "items=catalog"])).code).toBe(0);
    const store = openStore(db);
    store.db.prepare("DELETE FROM items WHERE id = 2").run();
    // Capture stages the delete; a replica method logs it.
    expect(Replica.attach(store, { ingestIntervalMs: 0 }).ingest()).toBe(1);
    new Queue(store).add("email", { to: "a@example.com" });
    new Queue(store, "reports").add("daily", {});
    const cursors = new CursorStore(store);
    cursors.set({ peer: "hub", bucket: "catalog" }, 17);
    store.close();
    // Another client's write, staged: status counts it and leaves it so.
    sql(db, "UPDATE items SET name = 'renamed' WHERE id = 1;");

    const text = await tidewire(["status", db]);
    expect(text.code).toBe(0);
    expect(text.stderr).toBe("");
    expect(text.stdout).toMatch(/^node {5}[0-9a-f]{16}$/m);
    expect(text.stdout).toMatch(/^ {2}catalog: items$/m);
    expect(text.stdout).toMatch(
      /^log {6}3 entries: 1 rows, 1 tombstones, 0 pending; last sequence 3; 1 staged$/m,
    );
    expect(text.stdout).toMatch(/hub\s+catalog\s+pull\s+17/);
    expect(text.stdout).toMatch(/default\s+1\s+0\s+0\s+0\s+0/);

    const json = await tidewire(["status", db, "--json"]);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      ok: true,
      buckets: { catalog: ["items"] },
      log: { entries: 3, rows: 1, tombstones: 1, pending: 0, lastSeq: 3, staged: 1 },
      cursors: [{ peer: "hub", bucket: "catalog", direction: "pull", value: "17" }],
      queues: { default: { pending: 1, total: 1 }, reports: { pending: 1 } },
    });
    expect(doc.nodeId).toMatch(/^[0-9a-f]{16}$/);
    expect(doc.clock.hlc).toMatch(/^[0-9a-f]{16}$/);
  });

  it("reports a database that is not a replica yet without changing it, and a missing one as exit 1", async () => {
    const db = appDb();
    const run = await tidewire(["status", db, "--json"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, nodeId: null, tables: [], queues: {} });
    expect((await tidewire(["status", db])).stdout).toMatch(/not a replica yet/);
    const missing = await tidewire(["status", join(tempDir(), "nope.db")]);
    expect(missing.code).toBe(1);
    oneErrorLine(missing, /no database at/);
  });
});

describe("tidewire untrack, and status after schema changes", () => {
  it("untracks (the app's DROP COLUMN then needs nothing), refuses an untracked table, and status shows capture per table", async () => {
    const db = appDb();
    expect((await tidewire(["init", db, "--table", "items", "--table", "orders"])).code).toBe(0);
    let doc = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect(doc.capture).toEqual([
      {
        table: "items",
        bucket: "default",
        state: "ok",
        installed: true,
        tracked: ["name"],
        present: ["name"],
        problem: null,
      },
      {
        table: "orders",
        bucket: "default",
        state: "ok",
        installed: true,
        tracked: ["item", "qty"],
        present: ["item", "qty"],
        problem: null,
      },
    ]);
    // A migration's rebuild while no replica is open: status reports it, changes nothing.
    sql(
      db,
      `BEGIN; CREATE TABLE new__orders (id TEXT PRIMARY KEY, item INTEGER, qty INTEGER, note TEXT);
      INSERT INTO new__orders (id, item, qty) SELECT id, item, qty FROM orders; DROP TABLE orders;
      ALTER TABLE new__orders RENAME TO orders; COMMIT;`,
    );
    const text = await tidewire(["status", db]);
    expect(text.stdout).toMatch(
      /^ {2}orders +reconcile pending \(next ingest or sync\) +missing +item, qty +item, qty, note$/m,
    );
    doc = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect(doc.capture[1]).toMatchObject({ state: "reconcile", installed: false });
    sql(db, "DROP TABLE items;");
    const gone = await tidewire(["status", db]);
    expect(gone.stdout).toMatch(
      /tracked table "items" is missing: .* run `tidewire untrack .*app\.db --table items`/,
    );

    const refused = await tidewire(["untrack", db, "--table", "orders", "--table", "nope"]);
    expect(refused.code).toBe(1);
    oneErrorLine(refused, /table "nope" is not tracked/);
    const out = await tidewire(["untrack", db, "--table", "items", "--table", "orders", "--json"]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ ok: true, untracked: ["items", "orders"] });
    doc = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect([doc.tables, doc.capture]).toEqual([[], []]);
    expect(sql(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger';").trim()).toBe("0");
    expect((await tidewire(["untrack", db])).code).toBe(2);
  });
});

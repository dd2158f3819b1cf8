/**
 * The full push as one atomic copy (issue 14, parts 2 and 4), against real
 * targets: a reader of the target in another process, looping during a
 * --resync and during a full push after a schema change, only ever sees
 * the old tables whole or the new ones whole (SQLite file, libSQL file,
 * PostgreSQL); the CLI SIGKILLed mid-copy leaves the old state, and the
 * rerun copies once; a crash after the target's commit is healed by the
 * key (one history row); indexes arrive, and with --with-views and
 * --all-tables the views and untracked tables, with a warning for what a
 * target cannot take.
 */
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { RemoteSync, Replica } from "../src/index.js";
import { runNode, useTempDirs, waitFor } from "./helpers.js";
import {
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

/** Items from..to, and a tag on every other one, as one transaction each. */
function addRows(db: Database.Database, from: number, to: number): void {
  const n = "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)";
  db.prepare(
    `${n} INSERT INTO items (id, name, qty, price, data) SELECT i, 'item ' || i, i % 100, i / 4.0, NULL FROM n`,
  ).run(from, to);
  db.prepare(
    `${n} INSERT INTO tags (item, tag, note) SELECT i, 't' || (i % 3), NULL FROM n WHERE i % 2 = 0`,
  ).run(from, to);
}

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
      () => existsSync(`${mirror}-wal`) && statSync(`${mirror}-wal`).size > 4_000_000,
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

const EXTRAS = `
  CREATE INDEX items_name ON items (name);
  CREATE UNIQUE INDEX items_qty_price ON items (qty DESC, price);
  CREATE INDEX items_name_nocase ON items (name COLLATE NOCASE);
  CREATE INDEX items_lower ON items (lower(name));
  CREATE INDEX items_cheap ON items (price) WHERE price < 10;
  CREATE TABLE notes (body TEXT, at INTEGER, UNIQUE (at));
  INSERT INTO notes VALUES ('one', 1), ('two', 2), (NULL, NULL);
  CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
  CREATE VIRTUAL TABLE search USING fts5(body);
`;

describe("a whole copy", () => {
  it("SQLite file: indexes always; views and untracked tables with the flags; a virtual table is a warning", async () => {
    const dir = tempDir();
    const replica = sourceReplica(dir);
    addRows(replica.store.db, 1, 50);
    replica.store.db.exec(EXTRAS);
    const plain = join(dir, "plain.db");
    const whole = join(dir, "whole.db");
    const a = new RemoteSync(replica, { target: `sqlite:${plain}` });
    const b = new RemoteSync(replica, { target: `sqlite:${whole}`, withViews: true, allTables: true });
    try {
      expect((await a.push()).warnings).toEqual([]);
      const r = await b.push();
      expect(r.warnings).toEqual([
        "virtual table search is not copied: its module may not exist on the target",
      ]);
      const p = new Database(plain, { readonly: true });
      const w = new Database(whole, { readonly: true });
      const objects = (db: Database.Database) =>
        db
          .prepare(
            "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_tidewire%' ESCAPE '\\' ORDER BY name",
          )
          .all();
      const items = [
        "items",
        "items_cheap",
        "items_lower",
        "items_name",
        "items_name_nocase",
        "items_qty_price",
      ];
      const named = (names: string[]) =>
        names.map((name) => ({
          type: /^(items|notes|tags)$/.test(name) ? "table" : name === "cheap" ? "view" : "index",
          name,
        }));
      expect(objects(p)).toEqual(named([...items, "tags"]));
      expect(objects(w)).toEqual(named(["cheap", ...items, "notes", "notes_at_key", "tags"]));
      expect(w.prepare("SELECT * FROM notes ORDER BY at").all()).toEqual([
        { body: null, at: null },
        { body: "one", at: 1 },
        { body: "two", at: 2 },
      ]);
      expect(w.prepare("SELECT count(*) AS n FROM cheap").get()).toEqual(
        replica.store.db.prepare("SELECT count(*) AS n FROM cheap").get(),
      );
      // The target's planner uses what arrived.
      expect(
        JSON.stringify(w.prepare("EXPLAIN QUERY PLAN SELECT * FROM items WHERE name = 'x'").all()),
      ).toContain("items_name");
      p.close();
      w.close();
      // A new index is a new shape: the next push copies again, and it arrives.
      replica.store.db.exec("CREATE INDEX items_qty ON items (qty)");
      expect((await a.push()).mode).toBe("full");
      const again = new Database(plain, { readonly: true });
      expect(again.prepare("SELECT name FROM sqlite_schema WHERE name = 'items_qty'").pluck().get()).toBe(
        "items_qty",
      );
      again.close();
    } finally {
      await a.close();
      await b.close();
      replica.close();
    }
  });

  it("PostgreSQL: indexes translated, what cannot be is a warning; views and untracked tables with the flags (skipped with no server)", async (ctx) => {
    if (!pgs.reachable()) return ctx.skip();
    const replica = sourceReplica(tempDir());
    addRows(replica.store.db, 1, 50);
    replica.store.db.exec(EXTRAS);
    const schema = pgs.newSchema();
    const sync = new RemoteSync(replica, {
      target: `${DATABASE_URL}?schema=${schema}`,
      withViews: true,
      allTables: true,
    });
    try {
      const r = await sync.push();
      expect([...r.warnings].sort()).toEqual([
        "index items_cheap on items is not created on PostgreSQL: it has a WHERE clause, which is SQLite SQL",
        "index items_lower on items is not created on PostgreSQL: it indexes an expression, which is SQLite SQL",
        "virtual table search is not copied: its module may not exist on the target",
      ]);
      const admin = pgs.admin();
      const ix = await admin.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
        [schema],
      );
      const defs = Object.fromEntries(
        ix.rows.map((x) => [
          x.indexname,
          x.indexdef.replace(` ${schema}.`, " S.").replace(`"${schema}".`, "S."),
        ]),
      );
      expect(Object.keys(defs)).toEqual(
        expect.arrayContaining([
          "items_name",
          "items_name_nocase",
          "items_qty_price",
          "notes_at_key",
          "items_pkey",
          "tags_pkey",
        ]),
      );
      expect(defs.items_qty_price).toMatch(
        /^CREATE UNIQUE INDEX items_qty_price ON S\.items USING btree \(qty DESC, price\)$/,
      );
      expect(defs.items_name_nocase).toMatch(/lower\(name\)/);
      expect((await admin.query(`SELECT count(*)::int AS n FROM "${schema}".cheap`)).rows).toEqual([
        replica.store.db.prepare("SELECT count(*) AS n FROM cheap").get(),
      ]);
      expect((await admin.query(`SELECT body, at FROM "${schema}".notes ORDER BY at`)).rows).toEqual([
        { body: "one", at: "1" },
        { body: "two", at: "2" },
        { body: null, at: null },
      ]);
      // No shadow schema is left behind.
      expect(
        (
          await admin.query(
            "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE '\\_tw\\_copy\\_%'",
          )
        ).rows,
      ).toEqual([{ n: 0 }]);
      // Again: the views and tables are replaced, not refused for existing.
      expect((await sync.push({ resync: true })).mode).toBe("full");
    } finally {
      await sync.close();
      replica.close();
    }
  });
});

describe("tidewire remote push --with-views --all-tables", () => {
  it("copies views and untracked tables, and says what it left out: in the JSON document, or one warning line each on stderr", async () => {
    const dir = tempDir();
    const replica = sourceReplica(dir);
    addRows(replica.store.db, 1, 10);
    replica.store.db.exec(EXTRAS);
    replica.close();
    const source = join(dir, "source.db");
    const json = await runNode([
      CLI,
      "remote",
      "push",
      source,
      "--target",
      `sqlite:${join(dir, "a.db")}`,
      "--with-views",
      "--all-tables",
      "--json",
    ]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      mode: "full",
      warnings: ["virtual table search is not copied: its module may not exist on the target"],
    });
    const a = new Database(join(dir, "a.db"), { readonly: true });
    expect(a.prepare("SELECT count(*) AS n FROM notes").get()).toEqual({ n: 3 });
    expect(a.prepare("SELECT count(*) AS n FROM cheap").get()).toEqual({ n: 10 });
    a.close();
    const text = await runNode([
      CLI,
      "remote",
      "push",
      source,
      "--target",
      `sqlite:${join(dir, "b.db")}`,
      "--all-tables",
    ]);
    expect(text.code).toBe(0);
    expect(text.stderr).toBe(
      "tidewire: warning: virtual table search is not copied: its module may not exist on the target\n",
    );
    const plain = await runNode([CLI, "remote", "push", source, "--target", `sqlite:${join(dir, "c.db")}`]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toBe("");
    // Without the flags: neither views nor untracked tables.
    const c = new Database(join(dir, "c.db"), { readonly: true });
    expect(c.prepare("SELECT name FROM sqlite_schema WHERE name IN ('notes', 'cheap')").all()).toEqual([]);
    c.close();
    const help = await runNode([CLI, "remote", "push", "--help"]);
    expect(help.stdout).toMatch(/--with-views/);
    expect(help.stdout).toMatch(/--all-tables/);
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

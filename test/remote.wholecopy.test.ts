/**
 * A whole copy (issue 14, part 2): a full push creates the indexes of the
 * pushed tables on the target, and with --with-views / --all-tables (the
 * library's withViews / allTables) the views and the untracked tables; what
 * a target cannot take (an expression or partial index on PostgreSQL, a
 * virtual table anywhere) is a warning, in the result and on stderr.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { RemoteSync } from "../src/remote/index.js";
import { runNode, useTempDirs } from "./helpers.js";
import { addRows, DATABASE_URL, sourceReplica, usePostgres } from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-wholecopy-");
const pgs = usePostgres("tw_wholecopy_");

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/remote/full-push.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
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

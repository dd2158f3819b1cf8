/**
 * `tidewire remote push`, run as the installed bin runs (`node
 * dist/cli/main.js`): --once and --json (one document), exit 0/1/2, one
 * error line on stderr, and --interval (a duration: 0s clamped to 1 s with a
 * warning, a clean stop on SIGTERM; a bare number refused).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import { type Run, runNode, useTempDirs, waitFor } from "./helpers.js";
import {
  DATABASE_URL,
  dumpSqlite,
  dumpSqliteFile,
  pgColumnTypes,
  postgresReachable,
  runOps,
  sourceReplica,
} from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-remote-");

/** The CLI, as a user runs it: a process of its own. */
const tidewire = (args: string[]) => runNode([CLI, ...args]);

function oneErrorLine(run: Run, pattern: RegExp): void {
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(run.stderr).toMatch(/^tidewire: /);
  expect(run.stderr).toMatch(pattern);
}

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/remote.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function source(): { dir: string; db: string } {
  const dir = tempDir();
  const replica = sourceReplica(dir);
  runOps(replica.store.db, [
    { kind: "put", id: 1, name: "pen", qty: 3n, price: 1.25, data: Buffer.from([0, 1]) },
    { kind: "tag", item: 1, tag: "a", note: null },
  ]);
  replica.close();
  return { dir, db: join(dir, "source.db") };
}

function dumpSource(db: string) {
  return dumpSqliteFile(db);
}

describe("tidewire remote push", () => {
  it("--once pushes in full, then incrementally; --json prints one document", async () => {
    const { dir, db } = source();
    const target = `sqlite:${join(dir, "mirror.db")}`;
    const first = await tidewire(["remote", "push", db, "--target", target, "--once", "--json"]);
    expect(first.code).toBe(0);
    expect(first.stderr).toBe("");
    const doc = JSON.parse(first.stdout);
    expect(doc).toMatchObject({ ok: true, mode: "full", backend: "sqlite", mutations: 2, target });
    expect(dumpSqliteFile(join(dir, "mirror.db"))).toEqual(dumpSource(db));
    const text = await tidewire(["remote", "push", db, "--target", target]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^incremental push to sqlite:.*: 0 rows in 0 payloads \(\d+ ms\); cursor \d+@[0-9a-f]{16}\n$/,
    );
  });

  it("exit 2 on usage errors, exit 1 on a missing database or a failing target, one line on stderr", async () => {
    const { dir, db } = source();
    const both = await tidewire([
      "remote",
      "push",
      db,
      "--target",
      "sqlite:x.db",
      "--once",
      "--interval",
      "5s",
    ]);
    expect(both.code).toBe(2);
    oneErrorLine(both, /--once and --interval exclude each other/);
    // Once a bare number of seconds; now every duration flag wants its unit.
    const seconds = await tidewire(["remote", "push", db, "--target", "sqlite:x.db", "--interval", "60"]);
    expect(seconds.code).toBe(2);
    oneErrorLine(seconds, /duration with its unit, such as 60s or 60ms/);
    const scheme = await tidewire(["remote", "push", db, "--target", "ftp://x", "--json"]);
    expect(scheme.code).toBe(2);
    expect(JSON.parse(scheme.stdout)).toMatchObject({ ok: false, error: { code: "ERR_INVALID_ARGUMENT" } });
    oneErrorLine(scheme, /unknown kind of target "ftp"/);
    const noTarget = await tidewire(["remote", "push", db]);
    expect(noTarget.code).toBe(2);
    const d1flag = await tidewire(["remote", "push", db, "--target", "sqlite:x.db", "--d1-local"]);
    expect(d1flag.code).toBe(2);
    oneErrorLine(d1flag, /--d1-local, --d1-remote and --d1-config apply to d1:NAME targets only/);
    const missing = await tidewire([
      "remote",
      "push",
      join(dir, "nope.db"),
      "--target",
      "sqlite:x.db",
      "--json",
    ]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, error: { code: "ERR_NO_DATABASE" } });
    const bare = join(dir, "bare.db");
    const b = new Database(bare);
    b.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    b.close();
    const before = readFileSync(bare);
    const untracked = await tidewire(["remote", "push", bare, "--target", "sqlite:x.db"]);
    expect(untracked.code).toBe(1);
    oneErrorLine(untracked, /tracks no tables; track some first with tidewire init/);
    expect(readFileSync(bare).equals(before)).toBe(true);
    const down = await tidewire([
      "remote",
      "push",
      db,
      "--target",
      "postgres://postgres:pw@127.0.0.1:1/test",
      "--json",
    ]);
    expect(down.code).toBe(1);
    oneErrorLine(
      down,
      /cannot reach postgres:\/\/postgres@127\.0\.0\.1:1\/test: .*the payload stays in the outbox/,
    );
    expect(down.stderr).not.toContain("pw");
    expect(JSON.parse(down.stdout)).toMatchObject({ ok: false, error: { code: "ERR_REMOTE" } });
  });

  it("--pg-type: a type outside the grammar, a malformed pair, a repeated column or a non-PostgreSQL target is a usage error", async () => {
    const { db } = source();
    const before = dumpSource(db);
    const pgUrl = "postgres://postgres@127.0.0.1:1/test";
    const cases: Array<[string[], RegExp]> = [
      [
        ["--target", pgUrl, "--pg-type", "items.name=text); DROP TABLE items; --"],
        /is not a type tidewire writes/,
      ],
      [["--target", pgUrl, "--pg-type", "items.name"], /Expected table.column=TYPE/],
      [["--target", pgUrl, "--pg-type", "name=text"], /is not table.column=TYPE/],
      [["--target", pgUrl, "--pg-type", "items.name=text", "--pg-type", "items.name=date"], /given twice/],
      [["--target", "sqlite:x.db", "--pg-type", "items.name=text"], /applies to postgres:\/\/ targets only/],
      [["--target", pgUrl, "--pg-type", "items.nope=text"], /items\.nope is not a column of a pushed table/],
    ];
    for (const [args, pattern] of cases) {
      const run = await tidewire(["remote", "push", db, ...args]);
      expect(run.code, args.join(" ")).toBe(2);
      oneErrorLine(run, pattern);
    }
    expect(dumpSource(db)).toEqual(before);
  });

  it("--pg-type sets a column's type on PostgreSQL; a column created with a fallback type is a warning on stderr (skipped with no server)", async (ctx) => {
    if (!(await postgresReachable())) return ctx.skip();
    const { db } = source();
    const r = Replica.open(db);
    r.store.db.exec("CREATE TABLE ev (id INTEGER PRIMARY KEY, day DATE, amount DECIMAL(6,2))");
    r.track("ev");
    r.store.db.exec("INSERT INTO ev VALUES (1, '2024-05-01', 12.5), (2, 'tomorrow', '3.25')");
    r.close();
    const schema = `tw_cli_${Date.now().toString(36)}_${process.pid}`;
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      const target = `${DATABASE_URL}?schema=${schema}`;
      const run = await tidewire([
        "remote",
        "push",
        db,
        "--target",
        target,
        "--pg-type",
        "items.name=varchar(20)",
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toBe(
        'tidewire: warning: ev.day (declared "DATE") was created as text, not date: it holds the TEXT "tomorrow"; choose with --pg-type ev.day=TYPE\n',
      );
      expect(await pgColumnTypes(admin, schema, "items")).toMatchObject({ name: "character varying(20)" });
      expect(await pgColumnTypes(admin, schema, "ev")).toEqual({
        id: "bigint",
        day: "text",
        amount: "numeric(6,2)",
      });
      const json = await tidewire([
        "remote",
        "push",
        db,
        "--target",
        target,
        "--pg-type",
        "items.name=text",
        "--json",
      ]);
      expect(json.code).toBe(0);
      expect(json.stderr).toBe("");
      expect(JSON.parse(json.stdout)).toMatchObject({
        mode: "full",
        fallbacks: [{ table: "ev", column: "day", mapped: "date", type: "text" }],
      });
      expect((await pgColumnTypes(admin, schema, "items")).name).toBe("text");
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });

  it("--interval 0s is clamped to 1 s with a warning, pushes on, and stops cleanly on SIGTERM", async () => {
    const { dir, db } = source();
    const mirror = join(dir, "mirror.db");
    const running = tidewire([
      "remote",
      "push",
      db,
      "--target",
      `sqlite:${mirror}`,
      "--interval",
      "0s",
      "--json",
    ]);
    await (async () => {
      // The full push is done once its one history row (recorded in the copy's transaction) is there.
      await waitFor(() => fullPayloads(mirror) === 1, "the first cycle", {
        timeoutMs: 20_000,
        intervalMs: 50,
      });
      const replica = Replica.open(db);
      runOps(replica.store.db, [{ kind: "put", id: 7, name: "late", qty: null, price: null, data: null }]);
      const want = dumpSqlite(replica.store.db);
      replica.close();
      await waitFor(
        () => {
          try {
            return JSON.stringify(dumpSqliteFile(mirror)) === JSON.stringify(want);
          } catch {
            return false;
          }
        },
        "the second cycle",
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      running.child.kill("SIGTERM");
    })();
    const run = await running;
    expect(run.code).toBe(0);
    expect(run.stderr).toBe("tidewire: warning: an interval of 0 s would push without pause; using 1 s\n");
    const doc = JSON.parse(run.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.cycles.ok).toBeGreaterThanOrEqual(2);
    expect(doc.cycles.failed).toBe(0);
  }, 60_000);
});

function fullPayloads(path: string): number {
  if (!existsSync(path)) return 0;
  try {
    const db = new Database(path, { readonly: true });
    try {
      return (
        (db
          .prepare("SELECT count(*) FROM _tidewire_sync_history WHERE sync_mode = 'full'")
          .pluck()
          .get() as number) ?? 0
      );
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

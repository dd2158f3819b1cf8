/**
 * Clock reset: a replica whose own clock ran far ahead is refused by its peers;
 * `replica.resetClock()` (and `tidewire clock reset`) re-stamps its changes
 * beyond the drift window so they are accepted, keeping their order, and
 * leaves alone what a peer may already hold. Real files; the CLI as the bin runs.
 */

import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Replica } from "../src/replica/replica.js";
import { listeningUrl, runNode, sql, useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const DAY = 86_400_000;
const tempDir = useTempDirs();
const open: Replica[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const r of open.splice(0)) r.close();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

function replica(dir: string, nodeId: string, maxDriftMs?: number): Replica {
  const r = Replica.open(join(dir, `${nodeId}.db`), { nodeId, ingestIntervalMs: 0, maxDriftMs });
  r.store.db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)");
  r.track("t");
  open.push(r);
  return r;
}

/** What the machine's clock jumping `aheadMs` forward leaves behind: an HLC in the future. */
function runAhead(r: Replica, aheadMs: number): void {
  r.ingest();
  r.store.db.prepare("UPDATE tw_clock SET hlc = ?").run(BigInt(Date.now() + aheadMs) << 16n);
}

/** Applies `changes`; a refusal (thrown, or nothing applied) is returned as such. */
function offer(to: Replica, from: Replica): { applied: number; refused: string | null } {
  const { changes } = from.changesSince(0, { excludeOrigin: to.nodeId });
  try {
    return { applied: to.apply(changes, { from: from.nodeId }).applied, refused: null };
  } catch (err) {
    return { applied: 0, refused: (err as Error).message };
  }
}

const hlcMs = (hex: string) => Number(BigInt(`0x${hex}`) >> 16n);

describe("Replica.resetClock", () => {
  it("re-stamps this node's changes beyond the window so a peer accepts them, in their order", () => {
    const dir = tempDir();
    const a = replica(dir, "a");
    const b = replica(dir, "b");
    b.store.db.prepare("INSERT INTO t VALUES (1, 'b-honest')").run();
    expect(offer(a, b).applied).toBe(1);

    runAhead(a, DAY);
    a.store.db.prepare("INSERT INTO t VALUES (2, 'first')").run();
    // Ingested apart: events of one key ingested together are logged as what they add up to.
    a.ingest();
    a.store.db.prepare("UPDATE t SET v = 'second' WHERE id = 2").run();
    a.store.db.prepare("UPDATE t SET v = 'a-later' WHERE id = 1").run();
    expect(hlcMs(a.now()) - Date.now()).toBeGreaterThan(DAY - 60_000);

    // Every peer refuses a change a day ahead, and b stays as it was.
    const before = offer(b, a);
    expect(before.applied).toBe(0);
    expect(dump(b.store.db, "t", "id")).not.toBe(dump(a.store.db, "t", "id"));

    const r = a.resetClock();
    expect(r.restamped).toBe(3);
    expect(r.entries).toBe(3);
    expect(r.aheadMs).toBeGreaterThan(DAY - 60_000);
    expect(Math.abs(hlcMs(r.after) - Date.now())).toBeLessThan(60_000);
    expect(a.now()).toBe(r.after);

    // The column entry of the update stays newer than the insert it followed.
    const log = a.store.db
      .prepare("SELECT col, hlc, seq FROM tw_log WHERE pk = 2 ORDER BY hlc")
      .all() as Array<{ col: string; hlc: number; seq: number }>;
    expect(log.map((e) => e.col)).toEqual(["", "v"]);

    expect(offer(b, a).applied).toBeGreaterThan(0);
    expect(dump(b.store.db, "t", "id")).toBe(dump(a.store.db, "t", "id"));
    expect(b.store.db.prepare("SELECT v FROM t ORDER BY id").pluck().all()).toEqual(["a-later", "second"]);

    // A write after the reset is stamped now and goes through too.
    a.store.db.prepare("UPDATE t SET v = 'after' WHERE id = 2").run();
    expect(offer(b, a).refused).toBeNull();
    expect(b.store.db.prepare("SELECT v FROM t WHERE id = 2").pluck().get()).toBe("after");
    // Nothing left to do the second time.
    expect(a.resetClock().restamped).toBe(0);
  });

  it("leaves changes within the window alone (a peer may hold them) and never sets the clock below them", () => {
    const dir = tempDir();
    const a = replica(dir, "a");
    runAhead(a, 30_000);
    a.store.db.prepare("INSERT INTO t VALUES (1, 'soon')").run();
    const stamped = a.now();
    const r = a.resetClock();
    expect(r).toMatchObject({ restamped: 0, entries: 0 });
    expect(BigInt(`0x${r.after}`)).toBeGreaterThanOrEqual(BigInt(`0x${stamped}`));
    // With a narrower window the same change counts as beyond it.
    expect(a.resetClock({ maxDriftMs: 1_000 }).restamped).toBe(1);
  });

  it("refuses, changing nothing, when a change of another node is beyond the window", () => {
    const dir = tempDir();
    const a = replica(dir, "a", 10 * DAY);
    const c = replica(dir, "c");
    runAhead(c, DAY);
    c.store.db.prepare("INSERT INTO t VALUES (1, 'from c')").run();
    expect(offer(a, c).applied).toBe(1); // a's window was ten days wide
    const clock = a.now();
    expect(() => a.resetClock({ maxDriftMs: 60_000 })).toThrow(/change from node c .* nothing was changed/);
    expect(a.now()).toBe(clock);
    expect(() => a.resetClock({ maxDriftMs: -1 })).toThrow(/maxDriftMs/);
  });

  it("takes maxDriftMs from the replica's options, as serve and sync pass --max-drift", () => {
    const dir = tempDir();
    const a = replica(dir, "a");
    const wide = Replica.open(join(dir, "wide.db"), {
      nodeId: "w",
      maxDriftMs: 2 * DAY,
      ingestIntervalMs: 0,
    });
    open.push(wide);
    wide.store.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    wide.track("t");
    runAhead(a, DAY);
    a.store.db.prepare("INSERT INTO t VALUES (1, 'x')").run();
    expect(offer(wide, a).applied).toBe(1);
  });
});

describe("tidewire clock reset", () => {
  beforeAll(() => {
    if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  });

  it("re-stamps and prints one JSON document; a missing file fails (exit 1) and is not created; a bad --max-drift is a usage error", async () => {
    const dir = tempDir();
    const a = replica(dir, "a");
    runAhead(a, DAY);
    a.store.db.prepare("INSERT INTO t VALUES (1, 'x')").run();
    a.close();
    open.splice(open.indexOf(a), 1);

    const run = await runNode([CLI, "clock", "reset", join(dir, "a.db"), "--json"], dir);
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc).toMatchObject({ ok: true, nodeId: "a", restamped: 1, entries: 1 });
    expect(doc.aheadMs).toBeGreaterThan(DAY - 60_000);

    const text = await runNode([CLI, "clock", "reset", join(dir, "a.db"), "--max-drift", "5m"], dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /^clock of a set from [0-9a-f]{16} to [0-9a-f]{16}; no change of its needed new stamps$/m,
    );

    const missing = await runNode([CLI, "clock", "reset", join(dir, "nope.db")], dir);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^tidewire: no database at /);
    expect(existsSync(join(dir, "nope.db"))).toBe(false);

    const bad = await runNode([CLI, "clock", "reset", join(dir, "a.db"), "--max-drift", "soon"], dir);
    expect(bad.code).toBe(2);
  });

  it("a plain SQLite file is refused (exit 1) and given no clock", async () => {
    const dir = tempDir();
    const path = join(dir, "plain.db");
    new Database(path).exec("CREATE TABLE x (a)").close();
    const run = await runNode([CLI, "clock", "reset", path], dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/is not a replica \(it has no clock\)/);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'tw_%'").pluck().get()).toBe(0);
    db.close();
  });

  it("end to end: a hub refuses a client a day ahead until clock reset; --max-drift widens serve's and sync's window", {
    timeout: 180_000,
  }, async () => {
    const dir = tempDir();
    const tidewire = (...args: string[]) => {
      const run = runNode([CLI, ...args], dir);
      children.push(run.child);
      return run;
    };
    const serve = async (name: string, ...extra: string[]) => {
      const run = tidewire("serve", "--db", join(dir, name), "--port", "0", "--insecure", ...extra);
      return listeningUrl(run.child);
    };
    const client = async (name: string) => {
      const db = join(dir, `${name}.db`);
      sql(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
      expect((await tidewire("init", db, "--table", "t")).code).toBe(0);
      return db;
    };
    const [strict, wide] = await Promise.all([serve("strict.db"), serve("wide.db", "--max-drift", "2d")]);
    const a = await client("a");
    const b = await client("b");
    sql(
      a,
      `UPDATE tw_clock SET hlc = ${BigInt(Date.now() + DAY) << 16n}; INSERT INTO t VALUES (1, 'ahead');`,
    );

    const refused = await tidewire("sync", a, "--remote", strict, "--once", "--json");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/ahead/);
    // The hub started with --max-drift 2d takes it; a client pulling it needs the same window.
    expect((await tidewire("sync", a, "--remote", wide, "--once", "--json")).code).toBe(0);
    expect((await tidewire("sync", b, "--remote", wide, "--once", "--json")).code).toBe(1);
    expect(sql(b, "SELECT count(*) FROM t;").trim()).toBe("0");
    const widened = await tidewire("sync", b, "--remote", wide, "--once", "--json", "--max-drift", "2d");
    expect(widened.code).toBe(0);
    expect(sql(b, "SELECT v FROM t;").trim()).toBe("ahead");

    // The recovery: reset a's clock, and the strict hub takes its change.
    expect((await tidewire("clock", "reset", a)).code).toBe(0);
    const after = await tidewire("sync", a, "--remote", strict, "--once", "--json");
    expect(after.stderr).toBe("");
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ ok: true });
  });

  it("serve and sync take --max-drift as a duration", async () => {
    for (const cmd of ["serve", "sync"]) {
      const help = await runNode([CLI, cmd, "--help"]);
      expect(help.stdout).toMatch(/--max-drift <duration>/);
    }
    const dir = tempDir();
    const bad = await runNode([
      CLI,
      "sync",
      join(dir, "x.db"),
      "--remote",
      "http://127.0.0.1:9",
      "--max-drift",
      "later",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/max-drift/);
  });
});

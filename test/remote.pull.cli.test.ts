/**
 * `tidewire remote pull` and `remote push --direction`, run as the installed
 * bin runs (`node dist/cli/main.js`): --once --json (one document), a rerun
 * that finds nothing, usage errors (exit 2, one line), --help, and a pull
 * killed with SIGKILL in the middle of a large backlog: rerun, every row is
 * there, and no change was applied twice.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { type Run, runNode, sql, useTempDirs, waitFor } from "./helpers.js";
import { dumpSqliteFile, runOps, sourceReplica } from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-pull-");
const tidewire = (args: string[]) => runNode([CLI, ...args]);

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/remote/pull.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function oneErrorLine(run: Run, pattern: RegExp): void {
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(run.stderr).toMatch(/^tidewire: |^error: /);
  expect(run.stderr).toMatch(pattern);
}

/** A tracked source with one row, pushed both ways once, so the mirror has its tables and capture. */
async function mirrored(): Promise<{ db: string; mirror: string }> {
  const dir = tempDir();
  const replica = sourceReplica(dir);
  runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 3n, price: null, data: null }]);
  replica.close();
  const db = join(dir, "source.db");
  const mirror = join(dir, "mirror.db");
  const push = await tidewire(["remote", "push", db, "--target", `sqlite:${mirror}`, "--direction", "both"]);
  expect(push.stderr).toBe("");
  expect(push.code).toBe(0);
  return { db, mirror };
}

function pullCursor(db: string): number {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const v = d.prepare("SELECT value FROM tw_cursors WHERE direction = 'pull'").pluck().get() as
      | string
      | undefined;
    return v === undefined ? 0 : Number(v);
  } finally {
    d.close();
  }
}

describe("tidewire remote pull", () => {
  it("--once --json pulls the sqlite3 shell's edits; a rerun finds nothing", async () => {
    const { db, mirror } = await mirrored();
    sql(
      mirror,
      "UPDATE items SET name = 'there' WHERE id = 1; INSERT INTO items (id, name) VALUES (2, 'new')",
    );
    const run = await tidewire(["remote", "pull", db, "--target", `sqlite:${mirror}`, "--json"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc).toMatchObject({ ok: true, backend: "sqlite", entries: 2, applied: 2, quarantined: 0 });
    expect(dumpSqliteFile(db)).toEqual(dumpSqliteFile(mirror));
    const again = await tidewire(["remote", "pull", db, "--target", `sqlite:${mirror}`, "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, entries: 0, applied: 0 });
    const text = await tidewire(["remote", "pull", db, "--target", `sqlite:${mirror}`]);
    expect(text.stdout).toMatch(/^pull from sqlite:.*mirror\.db: 0 entries, 0 of 0 changes applied/);
  }, 60_000);

  it("answers bad usage with exit 2 and one line, and --help with exit 0", async () => {
    const { db, mirror } = await mirrored();
    const target = `sqlite:${mirror}`;
    oneErrorLine(
      await tidewire(["remote", "pull", db, "--target", target, "--once", "--interval", "5s"]),
      /--once and --interval exclude each other/,
    );
    const both = await tidewire(["remote", "pull", db, "--target", target, "--interval", "soon"]);
    expect(both.code).toBe(2);
    const dir = await tidewire(["remote", "push", db, "--target", target, "--direction", "sideways"]);
    expect(dir.code).toBe(2);
    oneErrorLine(dir, /Expected push, pull or both/);
    const help = await tidewire(["remote", "pull", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--interval <duration>/);
    expect(help.stdout).toMatch(/^Usage: tidewire remote pull <db> \[options\]$/m);
    const missing = await tidewire(["remote", "pull", join(mirror, "..", "nope.db"), "--target", target]);
    expect(missing.code).not.toBe(0);
    oneErrorLine(missing, /nope\.db/);
  }, 60_000);

  it("SIGKILL in the middle of a pull, then a rerun: every row arrives, none applied twice", async () => {
    const { db, mirror } = await mirrored();
    const total = 20_000;
    sql(
      mirror,
      `WITH RECURSIVE c(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM c WHERE i < ${999 + total})
       INSERT INTO items (id, name, qty) SELECT i, 'r' || i, i FROM c`,
    );
    const target = `sqlite:${mirror}`;
    const first = tidewire(["remote", "pull", db, "--target", target, "--batch-size", "100"]);
    await waitFor(() => pullCursor(db) > 0, "the first pulled batch", { timeoutMs: 30_000, intervalMs: 2 });
    first.child.kill("SIGKILL");
    const killed = await first;
    expect(killed.code).toBeNull(); // killed, not finished
    const d = new Database(db, { readonly: true });
    const there = d.prepare("SELECT count(*) FROM items WHERE id >= 1000").pluck().get() as number;
    d.close();
    expect(there).toBeLessThan(total);
    const rerun = await tidewire(["remote", "pull", db, "--target", target, "--json"]);
    expect(rerun.stderr).toBe("");
    expect(rerun.code).toBe(0);
    const doc = JSON.parse(rerun.stdout);
    // What the killed run committed is not applied again, even from a batch read twice.
    expect(doc.applied).toBe(total - there);
    expect(dumpSqliteFile(db)).toEqual(dumpSqliteFile(mirror));
    expect(Number(sql(mirror, "SELECT count(*) FROM _tidewire_changes").trim())).toBe(0);
  }, 120_000);
});

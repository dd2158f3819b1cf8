/**
 * The registry of remote targets (src/remote/registry.ts) and `tidewire
 * remote add|list|remove`: ids derived or given, relative paths resolved,
 * a target or id registered twice refused, bad input refused with nothing
 * changed, remove deleting the target's cursor and spooled payloads and no
 * one else's, secrets (a PostgreSQL password, a libSQL authToken) kept for
 * the daemon and never printed by the CLI or `status`. Real SQLite files,
 * the built CLI in child processes.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { CursorStore, type Replica } from "../src/index.js";
import { Remotes } from "../src/remote/index.js";
import { makePayload } from "../src/remote/payload.js";
import { deriveId } from "../src/remote/registry.js";
import { PayloadSpool } from "../src/remote/spool.js";
import { readStatus } from "../src/status.js";
import { invalidArgument, runNode, useTempDirs } from "./helpers.js";
import { sourceReplica } from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-remote-registry-");
const PG = "postgres://app:pg-s3cret-pw@127.0.0.1:5432/test?schema=mirror";
const LIBSQL = "libsql://shop-acme.turso.io?authToken=tok-libsql-s3cret";

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/remote-targets.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

const replicas: Replica[] = [];
afterEach(() => {
  for (const r of replicas.splice(0)) r.close();
});

function open(): { dir: string; replica: Replica; remotes: Remotes } {
  const dir = tempDir();
  const replica = sourceReplica(dir);
  replicas.push(replica);
  return { dir, replica, remotes: new Remotes(replica.store) };
}

describe("Remotes", () => {
  it("registers targets with derived ids, resolved paths and defaults, secrets kept apart from the shown target", () => {
    const { dir, remotes, replica } = open();
    const file = remotes.add({ url: "sqlite:mirror.db" });
    expect(file).toMatchObject({
      id: "sqlite-mirror",
      url: `sqlite:${join(process.cwd(), "mirror.db")}`,
      target: `sqlite:${join(process.cwd(), "mirror.db")}`,
      backend: "sqlite",
      direction: "both",
      intervalMs: 60_000,
      tables: null,
      buckets: null,
      paused: false,
      lastSuccessAt: null,
      lastError: null,
    });
    const pg = remotes.add({
      url: PG,
      direction: "push",
      intervalMs: 1500,
      tables: ["tags", "items", "tags"],
    });
    expect(pg).toMatchObject({
      id: "pg-test.mirror",
      url: PG,
      backend: "postgres",
      tables: ["items", "tags"],
    });
    expect(pg.target).not.toContain("s3cret");
    const turso = remotes.add({ url: LIBSQL, id: "turso", buckets: ["default"] });
    expect(turso.target).toBe("libsql://shop-acme.turso.io");
    expect(turso.url).toBe(LIBSQL);
    const d1 = remotes.add({ url: "d1:DB", d1: { config: join(dir, "wrangler.toml") } });
    expect(d1).toMatchObject({ id: "d1-DB", d1: { local: true, config: join(dir, "wrangler.toml") } });
    expect(remotes.list().map((r) => r.id)).toEqual(["d1-DB", "pg-test.mirror", "sqlite-mirror", "turso"]);

    const status = readStatus(replica.store);
    expect(status.remotes.map((r) => r.id)).toEqual(["d1-DB", "pg-test.mirror", "sqlite-mirror", "turso"]);
    expect(status.remotes[1]).toEqual({
      id: "pg-test.mirror",
      target: pg.target,
      backend: "postgres",
      direction: "push",
      intervalMs: 1500,
      tables: ["items", "tags"],
      paused: false,
      lastPushAt: null,
      lastPullAt: null,
      lastSuccessAt: null,
      lastError: null,
      lastErrorAt: null,
      pending: 0,
    });
    expect(JSON.stringify(status)).not.toMatch(/s3cret/);
  });

  it("refuses a target or an id registered twice, and bad input, changing nothing", () => {
    const { remotes, replica } = open();
    remotes.add({ url: PG, id: "pg" });
    const before = replica.store.db.prepare("SELECT * FROM tw_remotes").all();
    // The same store with another password is the same target.
    expect(invalidArgument(() => remotes.add({ url: PG.replace("pg-s3cret-pw", "other") })).message).toMatch(
      /already registered as pg/,
    );
    expect(invalidArgument(() => remotes.add({ url: "sqlite:/tmp/x.db", id: "pg" })).message).toMatch(
      /already the id of postgres:/,
    );
    for (const input of [
      null,
      { url: "" },
      { url: "ftp://x" },
      { url: "sqlite:/tmp/y.db", id: "a/b" },
      { url: "sqlite:/tmp/y.db", id: "x".repeat(65) },
      { url: "sqlite:/tmp/y.db", direction: "sideways" },
      { url: "sqlite:/tmp/y.db", intervalMs: 0 },
      { url: "sqlite:/tmp/y.db", intervalMs: 1.5 },
      { url: "sqlite:/tmp/y.db", tables: [] },
      { url: "sqlite:/tmp/y.db", tables: ["nope"] },
      { url: "sqlite:/tmp/y.db", buckets: [""] },
      { url: "sqlite:/tmp/y.db", d1: { config: "w.toml" } },
      { url: "d1:DB" },
      { url: "d1:DB", d1: { config: "w.toml", local: true, remote: true } },
      { url: "postgres://app@h/db?password=pw" },
    ]) {
      invalidArgument(() => remotes.add(input as never));
    }
    expect(replica.store.db.prepare("SELECT * FROM tw_remotes").all()).toEqual(before);
  });

  it("derives ids in node-id characters for any target URL (property)", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 80 }), (name) => {
        const path = `/data/${name.replaceAll("/", "_").replaceAll("\u0000", "")}.db`;
        const id = deriveId("sqlite", `sqlite:${path}`);
        expect(id).toMatch(/^[A-Za-z0-9._:-]{1,64}$/);
        expect(id.startsWith("sqlite")).toBe(true);
      }),
    );
  });

  it("remove deletes the target's cursor and spooled payloads, and no other target's; false for an unknown id", () => {
    const { remotes, replica } = open();
    const a = remotes.add({ url: "sqlite:/tmp/a.db", id: "a" });
    const b = remotes.add({ url: "sqlite:/tmp/b.db", id: "b" });
    const cursors = new CursorStore(replica.store, { flushIntervalMs: 0 });
    for (const t of [a.target, b.target]) cursors.set({ peer: t, bucket: "*", direction: "push" }, "5@abc");
    cursors.flushDirty();
    const body = () =>
      makePayload({ mode: "full", scope: "x", reset: [], tables: [], mutations: [], cursor: null });
    const spoolA = new PayloadSpool(replica.store, "remote", a.target);
    const spoolB = new PayloadSpool(replica.store, "remote", b.target);
    spoolA.put(body());
    spoolB.put(body());
    expect(remotes.status().map((r) => r.pending)).toEqual([1, 1]);

    expect(remotes.remove("a", cursors)).toBe(true);
    expect(remotes.get("a")).toBeUndefined();
    expect(cursors.getAll().map((c) => c.peer)).toEqual([b.target]);
    expect(spoolA.pending()).toEqual([]);
    expect(spoolB.pending()).toHaveLength(1);
    expect(remotes.remove("a")).toBe(false);
    invalidArgument(() => remotes.remove("a/b"));
    // Added again, it starts afresh: no cursor, nothing pending.
    remotes.add({ url: "sqlite:/tmp/a.db", id: "a" });
    expect(remotes.status().find((r) => r.id === "a")?.pending).toBe(0);
  });

  it("records attempts, successes and errors, keeping the last error beside a later success", () => {
    const { remotes } = open();
    remotes.add({ url: "sqlite:/tmp/a.db", id: "a" });
    remotes.noteAttempt("a", 1000);
    remotes.noteError("a", "cannot open", 1001);
    remotes.noteSuccess("a", { push: true, pull: false }, 2000);
    expect(remotes.get("a")).toMatchObject({
      lastAttemptAt: 1000,
      lastPushAt: 2000,
      lastPullAt: null,
      lastSuccessAt: 2000,
      lastError: "cannot open",
      lastErrorAt: 1001,
    });
    expect(remotes.setPaused("a", true)).toBe(true);
    expect(remotes.get("a")?.paused).toBe(true);
    expect(remotes.setPaused("zz", true)).toBe(false);
    const before = remotes.get("a");
    invalidArgument(() => remotes.noteError("a", ""));
    invalidArgument(() => remotes.noteError("a", "x", -1));
    invalidArgument(() => remotes.noteAttempt("a", 1.5));
    invalidArgument(() => remotes.noteSuccess("a", { push: "yes" } as never));
    invalidArgument(() => remotes.setPaused("a", 1 as never));
    expect(remotes.get("a")).toEqual(before);
  });
});

describe("tidewire remote add|list|remove", () => {
  async function cli(...args: string[]) {
    return runNode([CLI, "remote", ...args]);
  }

  it("adds, lists and removes targets, never printing a secret", async () => {
    const { dir, replica } = open();
    const db = replica.store.path;
    replica.close();
    replicas.splice(0);
    const add = await cli(
      "add",
      db,
      PG,
      "--interval",
      "30s",
      "--direction",
      "push",
      "--tables",
      "items",
      "--json",
    );
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      ok: true,
      remote: {
        id: "pg-test.mirror",
        backend: "postgres",
        direction: "push",
        intervalMs: 30_000,
        tables: ["items"],
      },
    });
    const text = await runNode([CLI, "remote", "add", db, LIBSQL, "--id", "turso"], dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^remote turso: libsql:\/\/shop-acme\.turso\.io \(libsql\), both every 1m/);
    // A relative path is the caller's: resolved against its directory.
    expect((await runNode([CLI, "remote", "add", db, "sqlite:m.db"], dir)).code).toBe(0);

    const list = await cli("list", db, "--json");
    expect(list.code).toBe(0);
    const doc = JSON.parse(list.stdout) as { remotes: Array<{ id: string; target: string }> };
    expect(doc.remotes.map((r) => r.id)).toEqual(["pg-test.mirror", "sqlite-m", "turso"]);
    expect(doc.remotes[1]!.target).toBe(`sqlite:${join(dir, "m.db")}`);
    const listText = await cli("list", db);
    expect(listText.stdout).toMatch(/^ID\s+TARGET\s+DIRECTION/);
    const status = await runNode([CLI, "status", db, "--json"]);
    expect(JSON.parse(status.stdout).remotes).toHaveLength(3);
    const statusText = await runNode([CLI, "status", db]);
    expect(statusText.stdout).toMatch(/remotes\n\s+ID/);
    for (const out of [add, text, list, listText, status, statusText]) {
      expect(out.stdout + out.stderr).not.toMatch(/s3cret/);
    }

    const removed = await cli("remove", db, "turso", "--json");
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout)).toEqual({ ok: true, removed: "turso" });
    const again = await cli("remove", db, "turso");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no remote target turso/);
  });

  it("answers bad input and a duplicate with a usage error, changing nothing", async () => {
    const { replica } = open();
    const db = replica.store.path;
    replica.close();
    replicas.splice(0);
    expect((await cli("add", db, PG)).code).toBe(0);
    const cases: Array<[string[], RegExp]> = [
      [["add", db, PG.replace("pg-s3cret-pw", "x")], /already registered/],
      [["add", db, "ftp://nowhere"], /unknown kind of target/],
      [["add", db, "sqlite:/tmp/z.db", "--interval", "soon"], /duration/],
      [["add", db, "sqlite:/tmp/z.db", "--interval", "0s"], /at least 1ms/],
      [["add", db, "sqlite:/tmp/z.db", "--direction", "sideways"], /sideways/],
      [["add", db, "sqlite:/tmp/z.db", "--tables", "items,,tags"], /table names/],
      [["add", db, "sqlite:/tmp/z.db", "--tables", "ghosts"], /not tracked/],
      [["add", db, "sqlite:/tmp/z.db", "--id", "no/slash"], /id/],
      [["add", db, "sqlite:/tmp/z.db", "--d1-config", "w.toml"], /d1:NAME targets only/],
      [["add", db, "d1:DB"], /--d1-config/],
      [["add", db], /missing required argument/],
      [["remove", db], /missing required argument/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toMatch(/s3cret|\n\s+at /);
    }
    const json = await cli("add", db, "ftp://nowhere", "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { code: "ERR_INVALID_ARGUMENT" } });
    const list = JSON.parse((await cli("list", db, "--json")).stdout) as { remotes: unknown[] };
    expect(list.remotes).toHaveLength(1);
    const missing = await cli("list", join(tempDir(), "none.db"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no database at/);
    for (const verb of ["add", "list", "remove"]) {
      const help = await cli(verb, "--help");
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`remote ${verb}`));
    }
  });
});

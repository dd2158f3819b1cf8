/**
 * Each entry point loads only what it needs: importing `tidewire` or any of
 * its subpaths (the built dist/, in a child process) imports none of pg,
 * pg-copy-streams, @libsql/client, ioredis, ws or fastify, seen two ways: a
 * module hook logs their ES imports, and require.cache lists any CommonJS
 * copy loaded. A feature loads its package on first use, and fails with an
 * error naming the package to install when it is missing.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_URL, postgresReachable } from "./remote-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);
const BACKENDS = /\/node_modules\/(pg|pg-copy-streams|@libsql\/client|ioredis|ws|fastify)\//;
/** The package's subpaths, as package.json's "exports" names them ("" is the root). */
const SUBPATHS = ["", "sync", "hub", "mesh", "remote", "pins", "daemon"];
/** The end of the message of a MissingDependencyError for `pkg`. */
const missing = (pkg: string) =>
  expect.stringMatching(
    new RegExp(`needs the package '${pkg}', which is not installed: run npm install ${pkg}`),
  );

let dir: string;
beforeAll(() => {
  if (SUBPATHS.some((s) => !existsSync(join(ROOT, "dist", s, "index.js"))))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  dir = mkdtempSync(join(tmpdir(), "tidewire-entry-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs `body` (an ES module with `tw` bound to the entry `subpath`) under the
 * hooks, with the packages in `absent` missing; returns its last stdout line,
 * parsed, the CommonJS modules loaded and the hook log.
 */
async function child(name: string, subpath: string, body: string, absent = "") {
  const log = join(dir, `${name}.log`);
  const entry = new URL(`../dist/${subpath ? `${subpath}/` : ""}index.js`, import.meta.url).href;
  const script = `
    import { createRequire } from "node:module";
    const tw = await import(${JSON.stringify(entry)});
    const out = await (async () => { ${body} })();
    const cjs = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ out, cjs }));`;
  const { stdout } = await run(
    process.execPath,
    ["--import", "./test/fixtures/backend-register.mjs", "--input-type=module", "-e", script],
    { cwd: ROOT, env: { ...process.env, BACKEND_HOOK_LOG: log, BACKEND_HOOK_ABSENT: absent } },
  );
  const lines = stdout.trim().split("\n");
  const result = JSON.parse(lines[lines.length - 1]!) as { out: unknown; cjs: string[] };
  const hooked = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
  return { ...result, hooked, backends: result.cjs.filter((path) => BACKENDS.test(path)) };
}

/** What a failure caught in the child looks like, as JSON. */
const CAUGHT = `catch (err) { return { name: err.name, code: err.code, message: err.message }; }`;

it("import { Queue } from the entry loads none of the backend packages", async () => {
  const db = JSON.stringify(join(dir, "queue.db"));
  const { out, cjs, hooked, backends } = await child(
    "queue",
    "",
    `const store = tw.openStore(${db});
     const job = new tw.Queue(store).add("hello", { n: 1 });
     store.close();
     return job.state;`,
  );
  expect(out).toBe("pending");
  expect(hooked).toEqual([]);
  expect(backends).toEqual([]);
  // The check sees CommonJS modules at all: better-sqlite3 is one, loaded by openStore.
  expect(cjs.some((path) => path.includes("/node_modules/better-sqlite3/"))).toBe(true);
}, 60_000);

describe("each subpath, imported, loads no backend package until a feature needs one", () => {
  it.each(SUBPATHS.filter(Boolean))(
    "tidewire/%s",
    async (subpath) => {
      const { out, hooked, backends } = await child(
        `import-${subpath}`,
        subpath,
        "return Object.keys(tw).length;",
      );
      expect(out).toBeGreaterThan(0);
      expect(hooked).toEqual([]);
      expect(backends).toEqual([]);
    },
    60_000,
  );
});

it("the root entry is the core: the other areas' names are behind their subpaths", async () => {
  const { out } = await child("names", "", "return Object.keys(tw);");
  const names = out as string[];
  for (const core of [
    "openStore",
    "Store",
    "Queue",
    "Worker",
    "MemoryQueue",
    "Outbox",
    "Replica",
    "CursorStore",
  ])
    expect(names).toContain(core);
  for (const elsewhere of [
    "SyncManager",
    "Hub",
    "MeshMember",
    "openTarget",
    "startDaemon",
    "PinStore",
    "Peers",
  ])
    expect(names).not.toContain(elsewhere);
}, 60_000);

it("a PostgreSQL target without pg installed fails naming the package to install", async () => {
  const { out, hooked } = await child(
    "no-pg",
    "remote",
    `const target = tw.openTarget("postgres://127.0.0.1:1/none");
     try { await target.apply({}, 0); return "applied"; } ${CAUGHT}`,
    "pg",
  );
  expect(out).toEqual({
    name: "MissingDependencyError",
    code: "ERR_MISSING_DEPENDENCY",
    message: missing("pg"),
  });
  // The hook saw the import it refused: it is the one remote/targets/postgres.ts makes on first connect.
  expect(hooked).toEqual([expect.stringMatching(/^pg file:.*\/remote\/targets\/postgres\.js$/)]);
}, 60_000);

it("a mesh joined by URL without ioredis installed fails naming the package to install", async () => {
  const db = JSON.stringify(join(dir, "mesh.db"));
  const { out, hooked } = await child(
    "no-ioredis",
    "mesh",
    `const { Replica } = await import(${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)});
     const replica = Replica.open(${db});
     const member = new tw.MeshMember(replica, { redis: "redis://127.0.0.1:1" });
     try { await member.start(); return "started"; } ${CAUGHT} finally { replica.close(); }`,
    "ioredis",
  );
  expect(out).toEqual({
    name: "MissingDependencyError",
    code: "ERR_MISSING_DEPENDENCY",
    message: "The Redis mesh needs the package 'ioredis', which is not installed: run npm install ioredis",
  });
  expect(hooked).toEqual([expect.stringMatching(/^ioredis file:.*\/mesh\/redis-link\.js$/)]);
}, 60_000);

it("a full push to PostgreSQL without pg-copy-streams installed fails naming it", async (ctx) => {
  if (!(await postgresReachable())) return ctx.skip();
  const db = JSON.stringify(join(dir, "copy.db"));
  const schema = `tw_entry_${process.pid}`;
  const target = JSON.stringify(`${DATABASE_URL}?schema=${schema}`);
  const { out, hooked } = await child(
    "no-copy-streams",
    "remote",
    `const { Replica } = await import(${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)});
     const replica = Replica.open(${db});
     replica.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a')");
     replica.track("items");
     const sync = new tw.RemoteSync(replica, { target: ${target} });
     try { await sync.push(); return "pushed"; } ${CAUGHT}
     finally {
       // The failed copy's shadow schema and the target's are dropped with pg, which is installed.
       const { default: pg } = await import("pg");
       const admin = new pg.Client({ connectionString: ${JSON.stringify(DATABASE_URL)} });
       await admin.connect();
       await admin.query('DROP SCHEMA IF EXISTS "${schema}" CASCADE');
       await admin.end();
       await sync.close();
       replica.close();
     }`,
    "pg-copy-streams",
  );
  // The target's refusal wraps it, as it wraps any failed apply; the cause is in its message.
  expect(out).toMatchObject({ name: "RemoteError", message: missing("pg-copy-streams") });
  expect(hooked).toContainEqual(
    expect.stringMatching(/^pg-copy-streams file:.*\/remote\/targets\/postgres-copy\.js$/),
  );
}, 60_000);

/**
 * The main entry loads no backend package: `import { Queue } from "tidewire"`
 * (the built dist/index.js, in a child process) imports none of pg,
 * @libsql/client, ioredis or ws, seen two ways: a module hook logs their ES
 * imports, and require.cache lists any CommonJS copy loaded. A feature that
 * needs a missing one fails with an error naming the package.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ENTRY = new URL("../dist/index.js", import.meta.url).href;
const run = promisify(execFile);
const BACKENDS = /\/node_modules\/(pg|@libsql\/client|ioredis|ws)\//;

let dir: string;
beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/index.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  dir = mkdtempSync(join(tmpdir(), "tidewire-entry-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` (an ES module with `tw` bound to the entry) under the hooks; returns its last stdout line, parsed, and the hook log. */
async function child(name: string, body: string, absent = "") {
  const log = join(dir, `${name}.log`);
  const script = `
    import { createRequire } from "node:module";
    const tw = await import(${JSON.stringify(ENTRY)});
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
  return { ...result, hooked };
}

it("import { Queue } from the entry loads none of pg, @libsql/client, ioredis, ws", async () => {
  const db = JSON.stringify(join(dir, "queue.db"));
  const { out, cjs, hooked } = await child(
    "queue",
    `const store = tw.openStore(${db});
     const job = new tw.Queue(store).add("hello", { n: 1 });
     store.close();
     return job.state;`,
  );
  expect(out).toBe("pending");
  expect(hooked).toEqual([]);
  expect(cjs.filter((path) => BACKENDS.test(path))).toEqual([]);
  // The check sees CommonJS modules at all: better-sqlite3 is one, loaded by openStore.
  expect(cjs.some((path) => path.includes("/node_modules/better-sqlite3/"))).toBe(true);
}, 60_000);

it("a PostgreSQL target without pg installed fails naming the package to install", async () => {
  const { out, hooked } = await child(
    "no-pg",
    `const target = tw.openTarget("postgres://127.0.0.1:1/none");
     try { await target.apply({}, 0); return "applied"; }
     catch (err) { return { name: err.name, code: err.code, message: err.message }; }`,
    "pg",
  );
  expect(out).toEqual({
    name: "MissingDependencyError",
    code: "ERR_MISSING_DEPENDENCY",
    message: expect.stringMatching(/needs the package 'pg', which is not installed: run npm install pg$/),
  });
  // The hook saw the import it refused: it is the one remote/targets/postgres.ts makes on first connect.
  expect(hooked).toEqual([expect.stringMatching(/^pg file:.*\/remote\/targets\/postgres\.js$/)]);
}, 60_000);

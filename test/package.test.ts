/**
 * The published shape: `npm pack` the project, install the tarball into an
 * empty folder (better-sqlite3 builds from source there, which is slow), then
 * import the library by its name and run the bin through npx. Packs the dist/
 * that `npm test` has just built, without running the build again, so other
 * test files reading dist/ meanwhile never see it half-written.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/**
 * npm, when it runs `npm test`, exports its settings for this project (prefix,
 * local_prefix, package fields) to the environment; a child npm that inherited
 * them would install into, or run bins from, this project instead of the
 * empty folder. Keep only settings that say where the registry and cache are.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const keep =
    /^npm_config_(cache|userconfig|globalconfig|registry|cafile|nodedir|noproxy|proxy|https_proxy)$/i;
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) || keep.test(name)),
  );
}

let dir: string;
beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/index.js")) || !existsSync(join(ROOT, "dist/cli/main.js"))) {
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  }
  dir = mkdtempSync(join(tmpdir(), "tidewire-package-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

it("packs, installs into an empty folder, imports by name and runs the bin", async () => {
  const env = cleanEnv();
  const packDir = join(dir, "pack");
  mkdirSync(packDir);
  const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", packDir], {
    cwd: ROOT,
    env,
  });
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  for (const needed of ["package.json", "dist/index.js", "dist/index.d.ts", "dist/cli/main.js"]) {
    expect(files).toContain(needed);
  }
  expect(files.filter((f) => f.startsWith("test/") || f.startsWith("src/"))).toEqual([]);
  const tarball = join(packDir, info!.filename);

  const app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({
      name: "tidewire-install-check",
      version: "1.0.0",
      private: true,
      type: "module",
      allowScripts: { "better-sqlite3": true },
    }),
  );
  // typescript and @types/node come along in the same install: a strict TypeScript user has both.
  await run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, "typescript@5", "@types/node@20"],
    {
      cwd: app,
      env,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  expect(existsSync(join(app, "node_modules/tidewire/dist/index.d.ts"))).toBe(true);

  const script = `
    import { openStore, Queue, startDaemon } from "tidewire";
    import { openTarget } from "tidewire/remote";
    const store = openStore("./data/check.db");
    const queue = new Queue(store);
    const added = queue.add("hello", { n: 1 }, { priority: 2 });
    const read = queue.get(added.id);
    store.close();
    console.log(JSON.stringify({ id: read.id, type: read.type, payload: read.payload, state: read.state,
                                 startDaemon: typeof startDaemon, openTarget: typeof openTarget }));`;
  const imported = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: app, env });
  expect(JSON.parse(imported.stdout)).toEqual({
    id: 1,
    type: "hello",
    payload: { n: 1 },
    state: "pending",
    startDaemon: "function",
    openTarget: "function",
  });

  // The published types compile for a strict user, without skipLibCheck: every .d.ts the entry
  // reaches is checked, so a type the public API names from a package whose types are only a
  // devDependency of ours (better-sqlite3's Database) fails here.
  writeFileSync(
    join(app, "check.ts"),
    `import { openStore, Queue, type Job } from "tidewire";
     import { openTarget, type RemoteTarget } from "tidewire/remote";
     const target: RemoteTarget = openTarget("postgres://127.0.0.1:1/none");
     void target.close();
     const store = openStore("./data/check.db");
     const job: Job = new Queue(store).add("hello", { n: 1 });
     const id: number = job.id;
     store.close();
     export { id };\n`,
  );
  const tscArgs = ["--no", "--", "tsc", "--strict", "--noEmit", "--module", "nodenext", "--target", "es2022"];
  const compiled = await run("npx", [...tscArgs, "check.ts"], { cwd: app, env }).catch((err) => err);
  expect(`${compiled.stdout}${compiled.stderr ?? ""}`).toBe("");

  // `npx --no tidewire --help` would show npx's own help: options before "--" are npx's.
  const help = await run("npx", ["--no", "--", "tidewire", "--help"], { cwd: app, env });
  expect(help.stdout).toMatch(/Usage: tidewire/);
  const version = await run("npx", ["--no", "--", "tidewire", "--version"], { cwd: app, env });
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  expect(version.stdout.trim()).toBe(pkg.version);
}, 400_000);

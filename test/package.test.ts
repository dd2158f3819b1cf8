/**
 * The published shape: `npm pack` the project, check the tarball with publint
 * and attw (its exports and their types, as an ESM-only package), install it
 * into an empty folder (better-sqlite3 builds from source there, which is
 * slow) with none of the optional peer dependencies, then import the library
 * by its name, compile a strict TypeScript file that uses every entry point,
 * run the bin through npx and start the daemon. Packs the dist/
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
import { runNode, waitFor } from "./helpers.js";

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

// The install builds better-sqlite3 from source: about 2 minutes alone, 8 on a machine shared with other builds.
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
  // The tarball is checked meanwhile: the install, which builds better-sqlite3, is the long part.
  const installed = run(
    "npm",
    ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, "typescript@5", "@types/node@20"],
    {
      cwd: app,
      env,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  await Promise.all([installed, lintTarball(tarball, env)]);
  expect(existsSync(join(app, "node_modules/tidewire/dist/index.d.ts"))).toBe(true);
  // Optional peer dependencies are not installed with the package: the rest must work without them.
  for (const optional of ["pg", "pg-copy-streams", "@libsql/client", "ioredis"])
    expect(existsSync(join(app, "node_modules", optional)), optional).toBe(false);

  const script = `
    import { openStore, Queue } from "tidewire";
    import { startDaemon } from "tidewire/daemon";
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

  // The published types compile for a strict user, without skipLibCheck: every .d.ts an entry
  // reaches is checked, so a type the public API names from a package that is not installed
  // (better-sqlite3's types as a devDependency of ours, ioredis's or pg's as optional peers) fails here.
  writeFileSync(join(app, "check.ts"), STRICT_USER);
  const tscArgs = ["--no", "--", "tsc", "--strict", "--noEmit", "--module", "nodenext", "--target", "es2022"];
  const compiled = await run("npx", [...tscArgs, "check.ts"], { cwd: app, env }).catch((err) => err);
  expect(`${compiled.stdout}${compiled.stderr ?? ""}`).toBe("");

  // `npx --no tidewire --help` would show npx's own help: options before "--" are npx's.
  const help = await run("npx", ["--no", "--", "tidewire", "--help"], { cwd: app, env });
  expect(help.stdout).toMatch(/Usage: tidewire/);
  const version = await run("npx", ["--no", "--", "tidewire", "--version"], { cwd: app, env });
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  expect(version.stdout.trim()).toBe(pkg.version);

  // `tidewire serve`, what `npm start` runs, starts the daemon (embedded SQLite) with only the
  // required dependencies (its default database file, a free port).
  const serve = runNode(["node_modules/tidewire/dist/cli/main.js", "serve", "--port", "0"], app, env);
  let out = "";
  serve.child.stdout!.on("data", (d) => {
    out += d;
  });
  serve.child.stderr!.on("data", (d) => {
    out += d;
  });
  try {
    await waitFor(() => /tidewire listening on/.test(out), "the daemon to listen", { timeoutMs: 60_000 });
    const url = /tidewire listening on (http:\/\/[^,\s]+)/.exec(out)![1]!;
    const health = await fetch(`${url}/healthz`);
    expect(health.status, out).toBe(200);
  } finally {
    serve.child.kill("SIGTERM");
    await serve;
  }
}, 900_000);

/**
 * publint: the exports map and the files it names; attw: what each entry's
 * types resolve to, as Node 16+ and bundlers see them. esm-only: the package
 * has no CommonJS build, so require() of it is not a problem to report.
 */
async function lintTarball(tarball: string, env: NodeJS.ProcessEnv): Promise<void> {
  const publint = await run("npx", ["--no", "--", "publint", "run", tarball, "--strict"], { cwd: ROOT, env });
  expect(publint.stdout).toMatch(/All good!/);
  await run("npx", ["--no", "--", "attw", tarball, "--profile", "esm-only"], { cwd: ROOT, env }).catch(
    (err: { stdout?: string }) => expect.fail(`attw found problems:\n${err.stdout ?? String(err)}`),
  );
}

/** A strict user's file: something from every entry point, typed. */
const STRICT_USER = `
import { CursorStore, MemoryQueue, openStore, Outbox, Queue, Replica, TidewireError, Worker, type Job } from "tidewire";
import { type Daemon, type DaemonOptions, REMOTE_SYNC, startDaemon, stopOnSignals } from "tidewire/daemon";
import { Hub, type HubOptions } from "tidewire/hub";
import { MeshMember, type MeshMemberOptions, type MeshStatus } from "tidewire/mesh";
import { Pins, PinStore } from "tidewire/pins";
import { openTarget, RemoteSync, type RemoteTarget } from "tidewire/remote";
import { HttpTransport, MemoryTransport, Peers, PROTOCOL_VERSION, SyncManager, type SyncStatus } from "tidewire/sync";

const store = openStore("./data/check.db");
const job: Job = new Queue(store).add("hello", { n: 1 });
const memory: Job<{ n: number }> = new MemoryQueue().add("hello", { n: 1 });
const worker = new Worker(new Queue(store), { hello: async (j) => void j.id });
const outbox = new Outbox(store);
const cursors = new CursorStore(store);
const replica = Replica.open("./data/replica.db", { relay: true });
const hubOptions: HubOptions = { buckets: "*" };
const hub = new Hub(replica, hubOptions);
const [transport] = MemoryTransport.pair(hub);
const sync = new SyncManager(replica, transport, { direction: "both" });
const status: SyncStatus = sync.status;
const http = new HttpTransport("http://127.0.0.1:7420");
const peers = new Peers(store);
const meshOptions: MeshMemberOptions = { redis: "redis://127.0.0.1:6379" };
const mesh = new MeshMember(replica, meshOptions);
const meshStatus: MeshStatus = mesh.status;
const target: RemoteTarget = openTarget("postgres://127.0.0.1:1/none");
const remote = new RemoteSync(replica, { target });
const pins = new Pins(store);
const blobs: PinStore = pins.blobs;
const daemonOptions: DaemonOptions = { dbPath: "./data/daemon.db", port: 0 };
async function serve(): Promise<Daemon> {
  const daemon = await startDaemon(daemonOptions);
  stopOnSignals(daemon);
  return daemon;
}
const names: string[] = [REMOTE_SYNC, String(PROTOCOL_VERSION), status.state, meshStatus.state];
const failed: boolean = new TidewireError("x", "ERR_X") instanceof Error;
export { blobs, cursors, failed, http, job, memory, names, outbox, peers, remote, serve, worker };
`;

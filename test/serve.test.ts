/**
 * `tidewire serve` as a real process on a temp database: jobs added by this
 * process through the library are run by the daemon's worker, /metrics and
 * /healthz answer over real HTTP, SIGTERM and SIGINT stop it with exit 0 and a
 * second signal forces the exit. /healthz's 503 is checked on an in-process app.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startDaemon } from "../src/daemon/daemon.js";
import { buildServer } from "../src/daemon/server.js";
import { createLogger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import { openStore } from "../src/store.js";
import { ServeProcess as Daemon } from "./serve-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");

const running: ChildProcessWithoutNullStreams[] = [];
function spawnNode(args: string[], cwd: string): Daemon {
  const child = spawn(process.execPath, args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
  running.push(child);
  return new Daemon(child);
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let dir: string;
beforeAll(() => {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  dir = mkdtempSync(join(tmpdir(), "tidewire-serve-"));
});

afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("tidewire serve", () => {
  it("runs jobs added by another process, serves /metrics and /healthz, stops on SIGTERM", async () => {
    const db = join(dir, "nested", "term.db");
    const daemon = spawnNode([CLI, "serve", "--db", db, "--port", "0"], dir);
    const url = await daemon.url();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await daemon.line(/listening on/)).msg).toContain(`db ${db}`);

    const store = openStore(db);
    const queue = new Queue(store);
    try {
      const periodic = queue.listPeriodic().map((p) => [p.name, p.type, p.everyMs]);
      expect(periodic).toEqual([
        ["tidewire.checkpoint", "tidewire.checkpoint", 300_000],
        ["tidewire.cleanup", "tidewire.cleanup", 86_400_000],
        ["tidewire.collect-pins", "tidewire.collect-pins", 3_600_000],
        ["tidewire.pingPeers", "tidewire.pingPeers", 15_000],
        ["tidewire.syncPeers", "tidewire.syncPeers", 30_000],
      ]);

      const jobs = [1, 2, 3].map(() => queue.add("tidewire.checkpoint"));
      queue.add("later", null, { delayMs: 3_600_000 });
      // An application's job on the same queue: the daemon has no handler for it and must leave it be.
      const foreign = queue.add("app.email", { to: "a@example.com" });
      await until(
        () => jobs.every((j) => queue.get(j.id)?.state === "completed"),
        10_000,
        "the daemon to complete the checkpoint jobs",
      );
      expect(queue.get(foreign.id)).toMatchObject({ state: "pending", attempts: 0, lastError: null });

      const metrics = await fetch(`${url}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
      const text = await metrics.text();
      for (const name of [
        "tidewire_jobs_added_total",
        "tidewire_jobs_completed_total",
        "tidewire_jobs_failed_total",
        "tidewire_job_duration_seconds",
        "tidewire_queue_depth",
        "tidewire_sqlite_busy_retries_total",
        "tidewire_process_cpu_user_seconds_total",
      ]) {
        expect(text).toContain(`# TYPE ${name} `);
      }
      expect(text).toContain('tidewire_queue_depth{queue="default",state="pending"} 2');
      expect(text).toContain('tidewire_queue_depth{queue="default",state="completed"} 3');
      expect(text).toContain('tidewire_jobs_completed_total{type="tidewire.checkpoint"} 3');
      expect(text).toContain('tidewire_job_duration_seconds_count{type="tidewire.checkpoint"} 3');

      const health = await fetch(`${url}/healthz`, { headers: { "x-request-id": "test-health-1" } });
      expect(health.status).toBe(200);
      expect(health.headers.get("x-request-id")).toBe("test-health-1");
      const body = (await health.json()) as { uptimeSeconds: number };
      expect(body).toMatchObject({
        ok: true,
        db,
        queue: "default",
        stats: { pending: 2, completed: 3, running: 0, failed: 0, total: 5 },
      });
      expect(body.uptimeSeconds).toBeGreaterThan(0);
      // Logged once the response is sent, so it may trail the response a little.
      const logged = await daemon.line(/^request$/, (l) => l.reqId === "test-health-1");
      expect(logged).toMatchObject({ method: "GET", url: "/healthz", statusCode: 200 });
      const scrape = await daemon.line(/^request$/, (l) => l.url === "/metrics");
      expect(scrape.reqId).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      store.close();
    }

    daemon.child.kill("SIGTERM");
    const exit = await within(daemon.exited, 20_000, "stopping on SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    expect(daemon.lines.at(-1)?.msg).toBe("stopped");
    expect(daemon.stderr).toBe("");
    // Closing the store checkpointed the WAL into the database file.
    const wal = `${db}-wal`;
    expect(!existsSync(wal) || statSync(wal).size === 0).toBe(true);
  });

  it("stops on SIGINT with exit 0", async () => {
    const daemon = spawnNode([CLI, "serve", "--db", join(dir, "int.db"), "--port", "0"], dir);
    const url = await daemon.url();
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    daemon.child.kill("SIGINT");
    expect(await within(daemon.exited, 20_000, "stopping on SIGINT")).toEqual({ code: 0, signal: null });
    expect(daemon.lines.map((l) => l.msg)).toContain("stopped");
  });

  it("stops cleanly on a SIGTERM sent the moment it says it is listening, before start-up has returned", async () => {
    // "listening" is logged inside startDaemon, before serve hooks its signal handler: a signal in that
    // window used to kill the process outright. Sent from the first byte of output, it lands there.
    const child = spawn(process.execPath, [CLI, "serve", "--db", join(dir, "early.db"), "--port", "0"], {
      cwd: dir,
      stdio: ["pipe", "pipe", "pipe"],
    });
    running.push(child);
    let signalled = false;
    child.stdout.on("data", () => {
      if (!signalled) child.kill("SIGTERM");
      signalled = true;
    });
    child.stderr.resume();
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      child.once("exit", (code, signal) => r({ code, signal })),
    );
    expect(await within(exited, 20_000, "stopping on an early SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("waits for a job in flight on the first signal and exits at once on the second", async () => {
    // A daemon with a handler that never finishes, started through the library.
    const db = join(dir, "force.db");
    const daemonModule = pathToFileURL(join(ROOT, "dist/daemon/daemon.js")).href;
    const script = `
      import { startDaemon, stopOnSignals } from ${JSON.stringify(daemonModule)};
      const daemon = await startDaemon({
        dbPath: ${JSON.stringify(db)}, port: 0,
        handlers: { forever: () => new Promise(() => {}) },
      });
      stopOnSignals(daemon);
      setInterval(() => {}, 1000);`;
    const daemon = spawnNode(["--input-type=module", "-e", script], dir);
    await daemon.url();
    const store = openStore(db);
    try {
      const job = new Queue(store).add("forever");
      await until(() => new Queue(store).get(job.id)?.state === "running", 10_000, "the job to start");
      daemon.child.kill("SIGTERM");
      await daemon.line(/^stopping$/);
      await new Promise((r) => setTimeout(r, 300));
      expect(daemon.child.exitCode).toBeNull();
      daemon.child.kill("SIGTERM");
      // The job never finishes, so a daemon that ignored the second signal would never exit: 20 s
      // only leaves a loaded machine room.
      expect(await within(daemon.exited, 20_000, "the forced exit")).toEqual({ code: 1, signal: null });
      expect((await daemon.line(/again: exiting now/)).jobsInFlight).toBe(1);
      // Its lease is still held; another worker takes the job once it expires.
      expect(new Queue(store).get(job.id)?.state).toBe("running");
    } finally {
      store.close();
    }
  });

  it("refuses a file that is not a database, exit 1, and leaves it untouched", async () => {
    const file = join(dir, "notes.txt");
    writeFileSync(file, "not a database\n");
    const daemon = spawnNode([CLI, "serve", "--db", file, "--port", "0"], dir);
    expect(await within(daemon.exited, 10_000, "exiting")).toEqual({ code: 1, signal: null });
    expect(daemon.stderr).toMatch(/^tidewire: .*notes\.txt is not a SQLite database/);
    expect(daemon.stderr).not.toMatch(/^\s+at /m);
    expect(readFileSync(file, "utf8")).toBe("not a database\n");
  });

  it("fails with exit 1 when the port is taken, and 2 on a bad port", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    try {
      const port = (blocker.address() as { port: number }).port;
      const daemon = spawnNode([CLI, "serve", "--db", join(dir, "busy.db"), "--port", String(port)], dir);
      expect(await within(daemon.exited, 10_000, "exiting")).toEqual({ code: 1, signal: null });
      expect(daemon.stderr).toMatch(
        new RegExp(`^tidewire: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
      );
    } finally {
      blocker.close();
    }
    const bad = spawnNode([CLI, "serve", "--port", "http"], dir);
    expect(await within(bad.exited, 10_000, "exiting")).toEqual({ code: 2, signal: null });
    expect(bad.stderr).toMatch(/^tidewire: option '--port <port>' argument 'http' is invalid/);
    const slow = spawnNode([CLI, "serve", "--request-timeout", "soon"], dir);
    expect(await within(slow.exited, 10_000, "exiting")).toEqual({ code: 2, signal: null });
    expect(slow.stderr).toMatch(/--request-timeout <duration>' argument 'soon' is invalid/);
  });
});

describe("the request timeout", () => {
  it("is 30 s unless given, 0 turns it off, and a negative one is refused before anything opens", async () => {
    const store = openStore(join(dir, "timeouts.db"));
    try {
      const make = (requestTimeoutMs?: number) =>
        buildServer({
          store,
          queue: new Queue(store),
          logger: createLogger({ level: "silent" }),
          requestTimeoutMs,
        });
      expect(make().server.requestTimeout).toBe(30_000);
      expect(make(300_000).server.requestTimeout).toBe(300_000);
      expect(make(0).server.requestTimeout).toBe(0);
    } finally {
      store.close();
    }
    await expect(startDaemon({ dbPath: join(dir, "never.db"), requestTimeoutMs: -1 })).rejects.toThrow(
      /requestTimeoutMs/,
    );
    expect(existsSync(join(dir, "never.db"))).toBe(false);
  });
});

describe("buildServer", () => {
  it("answers /healthz with 503 when the database cannot be read", async () => {
    const store = openStore(join(dir, "closed.db"));
    const app = buildServer({ store, queue: new Queue(store), logger: createLogger({ level: "silent" }) });
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      store.close();
      const res = await fetch(`${url}/healthz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({
        ok: false,
        db: store.path,
        error: /cannot read the database/,
      });
      // Metrics still answer, with the depth left as it was.
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});

/**
 * `tidewire serve` under strain, as a real child process on loopback: another
 * program holding the database's write lock (the `sqlite3` shell in BEGIN
 * IMMEDIATE) must not freeze the endpoints; /metrics must not grow with the
 * node ids clients make up; live sockets are capped per token and in total
 * (under a low `ulimit -n`); wrong tokens are rate-limited by address.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startDaemon } from "../src/daemon/daemon.js";
import { buildServer } from "../src/daemon/server.js";
import { InvalidArgumentError } from "../src/errors.js";
import { Auth } from "../src/hub/auth.js";
import type { HubRoutesOptions } from "../src/hub/routes.js";
import { createLogger } from "../src/log.js";
import { BUSY_OPERATIONS } from "../src/metrics.js";
import { Queue } from "../src/queue/queue.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems, rows } from "./sync-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN = "strain-full-token-000001";
const tempDir = useTempDirs("tidewire-strain-");

const children: ChildProcessWithoutNullStreams[] = [];
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

beforeAll(() => {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

/** A child process, its output kept; `bash -c` lets a test lower its limits before exec. */
function spawnKept(command: string, args: string[]) {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  const out = { stdout: "", stderr: "" };
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out.stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    out.stderr += d;
  });
  return { child, out };
}

/** `tidewire serve` on a temp database, on a free loopback port; `ulimit` lowers its open-file limit. */
async function serve(flags: string[] = [], ulimit?: number) {
  const db = join(tempDir(), "hub.db");
  const auth = flags.includes("--tokens-file") ? [] : ["--token", TOKEN];
  const args = [CLI, "serve", "--db", db, "--port", "0", ...auth, ...flags];
  const { child, out } =
    ulimit === undefined
      ? spawnKept(process.execPath, args)
      : spawnKept("bash", ["-c", `ulimit -n ${ulimit} && exec "$0" "$@"`, process.execPath, ...args]);
  await waitFor(
    () => /listening on http/.test(out.stdout) || child.exitCode !== null,
    "the daemon to listen",
    {
      timeoutMs: 20_000,
      intervalMs: 20,
    },
  );
  const url = /listening on (http:\/\/[^,\s]+)/.exec(out.stdout)?.[1];
  if (!url) throw new Error(`the daemon did not start: ${out.stderr}`);
  return { url, db, child, out };
}

/** GET or POST with a deadline, timed: a frozen daemon fails the test instead of hanging it. */
async function call(url: string, init: RequestInit & { token?: string | null; body?: string } = {}) {
  const { token = TOKEN, ...rest } = init;
  const started = performance.now();
  const res = await fetch(url, {
    ...rest,
    headers: {
      ...(rest.body ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, ms: performance.now() - started };
}

const push = (url: string, nodeId: string, id: number, token: string | null = TOKEN) =>
  call(`${url}/v1/push`, {
    method: "POST",
    token,
    body: JSON.stringify({
      nodeId,
      cursor: String(id),
      changes: [
        {
          table: "items",
          bucket: "default",
          pk: [id],
          op: "insert",
          columns: { name: `n${id}`, qty: id },
          hlc: "0000018f00000000",
          origin: nodeId,
          seq: id,
        },
      ],
    }),
  });

/** The `sqlite3` shell holding BEGIN IMMEDIATE on `db` until `release` is called. */
async function holdWriteLock(db: string) {
  const { child, out } = spawnKept("sqlite3", [db]);
  child.stdin.write(".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await waitFor(() => out.stdout.includes("locked"), "the shell to take the write lock", {
    timeoutMs: 15_000,
  });
  return async () => {
    child.stdin.end("ROLLBACK;\n.quit\n");
    await new Promise((r) => child.once("exit", r));
  };
}

describe("an outside write lock on the hub's file", () => {
  it("leaves /healthz fast, fails /readyz, answers a push 503 + Retry-After, and syncs after release", async () => {
    const hub = await serve();
    const client = openItems(tempDir(), "client-1");
    cleanup.push(() => client.close());
    const transport = new HttpTransport(hub.url, { token: TOKEN, retries: 0 });
    cleanup.push(() => transport.close());
    const manager = new SyncManager(client, transport, { intervalMs: 60_000, buckets: ["default"] });
    client.store.db.prepare("INSERT INTO items VALUES (1, 'before', 1)").run();
    await manager.syncOnce();
    expect((await call(`${hub.url}/readyz`)).status).toBe(200);

    // A subscriber from before the lock: it must hear of the push made after the release.
    const notices: string[] = [];
    const ws = new WebSocket(`${hub.url.replace("http", "ws")}/v1/live?buckets=default`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    cleanup.push(() => ws.terminate());
    ws.on("message", (d) => notices.push(String(d)));
    await new Promise((r, j) => ws.once("open", r).once("error", j));

    const release = await holdWriteLock(hub.db);
    let released = false;
    cleanup.push(() => (released ? undefined : release()));
    // The daemon's worker, scheduler and watcher all meet the lock within a second.
    const health: number[] = [];
    const deadline = Date.now() + 3_000;
    while (Date.now() < deadline) {
      const h = await call(`${hub.url}/healthz`);
      expect(h.status).toBe(200);
      health.push(h.ms);
    }
    expect(Math.max(...health)).toBeLessThan(1_000);
    expect(JSON.parse((await call(`${hub.url}/healthz`)).text)).toMatchObject({ ok: true, writable: false });

    // Past the lock wait (2 s by default) /readyz says the hub cannot take writes.
    let ready = await call(`${hub.url}/readyz`);
    const readyDeadline = Date.now() + 10_000;
    while (ready.status !== 503 && Date.now() < readyDeadline) ready = await call(`${hub.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.ms).toBeLessThan(1_000);
    expect(JSON.parse(ready.text).error).toMatch(/write lock for \d+ ms/);

    const refused = await push(hub.url, "client-2", 2);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(JSON.parse(refused.text).error.code).toBe("ERR_DATABASE_BUSY");
    expect(refused.ms).toBeLessThan(5_000);
    // Every busy retry the daemon made is counted under one of the fixed operations.
    const scraped = (await call(`${hub.url}/metrics`)).text;
    const busy = [...scraped.matchAll(/^tidewire_sqlite_busy_retries_total\{operation="([^"]+)"\} (\d+)$/gm)];
    expect(
      busy.map((m) => m[1]).filter((op) => !(BUSY_OPERATIONS as readonly string[]).includes(op!)),
    ).toEqual([]);
    expect(busy.reduce((n, m) => n + Number(m[2]), 0)).toBeGreaterThan(0);
    // A new live socket is still accepted while the lock is held.
    const during = new WebSocket(`${hub.url.replace("http", "ws")}/v1/live?buckets=default`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    cleanup.push(() => during.terminate());
    await new Promise((r, j) => during.once("open", r).once("error", j));
    const h = await call(`${hub.url}/healthz`);
    expect(h.ms).toBeLessThan(1_000);
    console.log(
      `lock held: /healthz max ${Math.max(...health, h.ms).toFixed(0)} ms over ${health.length + 1} calls, ` +
        `/readyz ${ready.ms.toFixed(0)} ms (503), push ${refused.ms.toFixed(0)} ms (503)`,
    );

    released = true;
    await release();
    let after = await call(`${hub.url}/readyz`);
    const afterDeadline = Date.now() + 10_000;
    while (after.status !== 200 && Date.now() < afterDeadline) after = await call(`${hub.url}/readyz`);
    expect(after.status).toBe(200);

    notices.length = 0;
    client.store.db.prepare("INSERT INTO items VALUES (3, 'after', 3)").run();
    const result = await manager.syncOnce();
    expect(result.pushed).toBe(1);
    await waitFor(() => notices.length > 0, "a live notice after the release", { timeoutMs: 10_000 });
    expect(JSON.parse(notices[0]!)).toEqual({ type: "changes", buckets: ["default"] });
    expect(rows(client)).toHaveLength(2);
  }, 60_000);
});

/** The daemon's resident set, MiB, from /proc (Linux). */
function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) / 1024;
}

/** Runs `n` calls of `fn(i)`, `width` at a time. */
async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

describe("/metrics", () => {
  it("stays the same size and names no client however many node ids push and pull", async () => {
    const metricsToken = "strain-metrics-token-01";
    const hub = await serve(["--rate-limit", "0", "--metrics-token", metricsToken]);
    const metrics = () => call(`${hub.url}/metrics`, { token: metricsToken });
    // One row every pull is served, one change every push repeats: the data stays the same size.
    expect((await push(hub.url, "seed-node", 1)).status).toBe(200);
    const pid = hub.child.pid!;
    const start = { bytes: (await metrics()).text.length, rss: rssMiB(pid) };

    const ids = Array.from({ length: 20_000 }, (_, i) => `spray-${i.toString(36)}-node`);
    const spray = (from: number, to: number) =>
      pool(to - from, 8, async (k) => {
        const i = from + k;
        const nodeId = ids[i]!;
        const res =
          i % 2 === 0
            ? await push(hub.url, nodeId, 1)
            : await call(`${hub.url}/v1/pull`, {
                method: "POST",
                body: JSON.stringify({ nodeId, cursor: "0", buckets: ["default"], limit: 1 }),
              });
        if (res.status !== 200) throw new Error(`${nodeId}: ${res.status} ${res.text}`);
      });
    // The first thousand fill what is bounded anyway (GC kinds, heap spaces, histogram buckets).
    await spray(0, 1_000);
    const warm = await metrics();
    expect(warm.status).toBe(200);
    const before = { bytes: warm.text.length, rss: rssMiB(pid) };
    await spray(1_000, ids.length);

    const after = await metrics();
    const rss = rssMiB(pid);
    console.log(
      `20,000 node ids: /metrics ${start.bytes} bytes at start, ${before.bytes} after 1,000 ids, ` +
        `${after.text.length} after 20,000; daemon RSS ${start.rss.toFixed(1)} -> ${before.rss.toFixed(1)} -> ${rss.toFixed(1)} MiB`,
    );
    // Values grow a digit or two; series appear only among the process's own (a new GC kind, a handle type).
    const series = (text: string) =>
      new Set(
        text
          .split("\n")
          .filter((l) => l && !l.startsWith("#"))
          .map((l) => l.replace(/ \S+$/, "")),
      );
    const known = series(warm.text);
    const added = [...series(after.text)].filter((s) => !known.has(s));
    // And among the daemon's own periodic jobs, which ran meanwhile (their types are its own).
    const foreign = added.filter((s) => !/^tidewire_(process_|nodejs_|job)/.test(s));
    expect(foreign).toEqual([]);
    console.log(
      `series added after the first 1,000 ids: ${[...new Set(added.map((s) => s.replace(/[{].*/, "")))].join(", ")}`,
    );
    expect(after.text.length).toBeLessThan(before.bytes + 16_384);
    expect(after.text).not.toContain("spray-");
    expect(after.text).toMatch(/tidewire_hub_changes_total\{direction="push"\} 10001/);
    expect(after.text).toMatch(/tidewire_hub_changes_total\{direction="pull"\} 10000/);

    // Per-client detail is in the status, behind a token, and bounded too.
    const status = JSON.parse((await call(`${hub.url}/v1/status`)).text) as {
      clients: Array<{ nodeId: string }>;
    };
    expect(status.clients.length).toBeLessThanOrEqual(1_000);
    expect(status.clients[0]!.nodeId).toMatch(/^spray-/);

    // Behind --metrics-token: no token, or a sync token, is not enough; /healthz and /readyz stay public.
    expect((await call(`${hub.url}/metrics`, { token: null })).status).toBe(401);
    expect((await call(`${hub.url}/metrics`)).status).toBe(401);
    expect((await call(`${hub.url}/healthz`, { token: null })).status).toBe(200);
    expect((await call(`${hub.url}/readyz`, { token: null })).status).toBe(200);
  }, 400_000);

  it("is public without --metrics-token", async () => {
    const hub = await serve();
    const res = await call(`${hub.url}/metrics`, { token: null });
    expect(res.status).toBe(200);
    expect(res.text).toContain("tidewire_hub_changes_total");
  });
});

const READER_1 = "strain-reader-token-0001";
const READER_2 = "strain-reader-token-0002";

function tokensFile(): string {
  const file = join(tempDir(), "tokens.json");
  writeFileSync(
    file,
    JSON.stringify({
      tokens: [
        { token: TOKEN, buckets: "*", access: "admin", name: "admin" },
        { token: READER_1, buckets: ["default"], access: "read", name: "reader-1" },
        { token: READER_2, buckets: ["default"], access: "read", name: "reader-2" },
      ],
    }),
  );
  return file;
}

interface Upgrade {
  ws?: WebSocket;
  status?: number;
  retryAfter?: string;
  body?: string;
  error?: string;
}

/** One GET /v1/live upgrade: the open socket, or the status the hub refused it with, or the error. */
function upgrade(url: string, token: string | null): Promise<Upgrade> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/v1/live?buckets=default`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      handshakeTimeout: 5_000,
    });
    ws.once("open", () => resolve({ ws }));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => {
        body += d;
      });
      res.on("end", () =>
        resolve({
          status: res.statusCode,
          retryAfter: res.headers["retry-after"] as string | undefined,
          body,
        }),
      );
    });
    ws.once("error", (err) => resolve({ error: err.message }));
  });
}

/** Opens live sockets with `token` until one is not opened (at most `max`); the open ones are closed after the test. */
async function openUntilRefused(url: string, token: string, max: number) {
  const open: WebSocket[] = [];
  for (let i = 0; i < max; i++) {
    const u = await upgrade(url, token);
    if (!u.ws) return { opened: open.length, open, last: u };
    const ws = u.ws;
    cleanup.push(() => ws.terminate());
    open.push(ws);
  }
  return { opened: open.length, open, last: {} as Upgrade };
}

describe("live sockets", () => {
  it("are capped per token and in total, so a daemon under ulimit -n 256 keeps answering", async () => {
    const hub = await serve(["--tokens-file", tokensFile()], 256);
    const first = await openUntilRefused(hub.url, READER_1, 400);
    expect(first.last).toMatchObject({ status: 429 });
    expect(first.opened).toBe(100);
    expect(JSON.parse(first.last.body!).error).toMatchObject({
      code: "ERR_TOO_MANY_SOCKETS",
      message: expect.stringMatching(/100 live sockets open, the most the hub allows per token/),
    });
    // Another token fills the rest: the total is half of the 256 descriptors the daemon may open.
    const second = await openUntilRefused(hub.url, READER_2, 400);
    expect(second.last).toMatchObject({ status: 503, retryAfter: "30" });
    expect(first.opened + second.opened).toBe(128);
    expect(JSON.parse(second.last.body!).error.code).toBe("ERR_LIVE_FULL");
    console.log(`ulimit -n 256: ${first.opened} + ${second.opened} live sockets, then refused`);

    const health = await call(`${hub.url}/healthz`, { token: null });
    expect(health.status).toBe(200);
    expect(health.ms).toBeLessThan(1_000);
    expect((await push(hub.url, "legit-node", 1)).status).toBe(200);
    // A socket closed frees its place.
    first.open[0]!.close();
    let again = await upgrade(hub.url, READER_1);
    for (let i = 0; i < 100 && again.status === 429; i++) again = await upgrade(hub.url, READER_1);
    expect(again.ws).toBeDefined();
    again.ws!.terminate();
  }, 120_000);
});

/** A hub app in this process, for limits whose windows a test must see pass. */
async function serveHere(hubOptions: Partial<HubRoutesOptions>) {
  const hub = hubOn(tempDir());
  const app = buildServer({
    store: hub.replica.store,
    queue: new Queue(hub.replica.store),
    logger: createLogger({ level: "silent" }),
    hub: { hub, auth: Auth.token(TOKEN), ...hubOptions },
  });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  cleanup.push(() => hub.replica.close());
  cleanup.push(() => app.close());
  return url;
}

describe("wrong or missing tokens", () => {
  it("lock the address out only for the rest of the window; live upgrades count against the rate limit", async () => {
    const url = await serveHere({ authFailures: 3, authFailureWindowMs: 1_000, rateLimitPerSecond: 5 });
    const statuses = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await push(url, "guesser", 1, `wrong-token-guess-${i}`)).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    expect((await push(url, "guesser", 1)).status).toBe(429);
    let after = await push(url, "guesser", 1);
    const deadline = Date.now() + 10_000;
    while (after.status === 429 && Date.now() < deadline) after = await push(url, "guesser", 1);
    expect(after.status).toBe(200);

    // 5 upgrades per second per token: a burst of 12 meets the limit.
    const burst = await Promise.all(Array.from({ length: 12 }, () => upgrade(url, TOKEN)));
    for (const u of burst) u.ws?.terminate();
    const limited = burst.filter((u) => u.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(JSON.parse(limited[0]!.body!).error.code).toBe("ERR_RATE_LIMITED");
  });

  it("are rate-limited by address: after 60 in a minute every request from it is 429, the right token too", async () => {
    const hub = await serve();
    const answers: number[] = [];
    for (let i = 0; i < 70; i++) {
      const res = await push(hub.url, "guesser", 1, i % 2 ? null : `wrong-token-guess-${i}`);
      answers.push(res.status);
    }
    expect(answers.slice(0, 60).every((s) => s === 401)).toBe(true);
    expect(answers.slice(60).every((s) => s === 429)).toBe(true);
    const refused = await push(hub.url, "guesser", 1);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect(JSON.parse(refused.text).error.code).toBe("ERR_TOO_MANY_AUTH_FAILURES");
    // WebSocket upgrades from the address too, the right token included.
    expect(await upgrade(hub.url, TOKEN)).toMatchObject({ status: 429 });
    expect(await upgrade(hub.url, "wrong-token-for-live-0")).toMatchObject({ status: 429 });
    // What needs no token is not limited.
    expect((await call(`${hub.url}/healthz`, { token: null })).status).toBe(200);
  });
});

describe("the limits' options", () => {
  it.each([
    [{ maxLive: 0 }, /maxLive/],
    [{ maxLivePerToken: 1.5 }, /maxLivePerToken/],
    [{ authFailures: -1 }, /authFailures/],
    [{ busyTimeoutMs: -1 }, /busyTimeoutMs/],
    [{ lockWaitMs: Number.NaN }, /lockWaitMs/],
    [{ metricsToken: "short" }, /metricsToken: must be 16 to 512 printable characters/],
  ] as const)("%o is refused before anything is opened", async (bad, message) => {
    const dbPath = join(tempDir(), "never.db");
    const err = await startDaemon({ dbPath, port: 0, token: TOKEN, ...bad }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(message);
    expect(existsSync(dbPath)).toBe(false);
  });
});

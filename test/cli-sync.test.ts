/**
 * End to end, driven only through the CLI (`node dist/cli/main.js`) and the
 * `sqlite3` shell: a hub (`tidewire serve`) and three clients (`tidewire
 * sync`), each written by the shell, with concurrent conflicting edits of the
 * same rows and deletes; after sync all four databases hold the same rows.
 * Also: `--watch` picks up another client's write through the live notice
 * of a hub that relays the bucket without having its table, and stops on
 * SIGTERM with a JSON summary; exit statuses 0/1/2 and
 * one JSON document on stdout with --json. The knobs: a sentence and the
 * hub's code for each refused handshake (no token, a wrong one, a bucket
 * out of scope or unknown, another protocol version), --push-interval and
 * --pull-interval each keeping its own pace, and --warn-after-failures
 * warning once while the hub is down and saying when it is back.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { listeningUrl, type Run, runNode, sql, useTempDirs, waitFor } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN = "e2e-token-0123456789abcdef";
/** May use bucket "other" only, which the hub serves because this token names it. */
const OTHER = "e2e-other-bucket-0123456789";
/** Reads GET /v1/status (it needs every bucket), so a test can wait for what the hub has seen. */
const WATCHER = "e2e-status-reader-0123456789";
const tempDir = useTempDirs("tidewire-cli-sync-");

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/sync.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function tidewire(args: string[]): Promise<Run> & { child: ChildProcess } {
  const run = runNode([CLI, ...args]);
  children.push(run.child);
  return run;
}

const ROWS = "SELECT id, name, qty FROM items ORDER BY id";

/** A hub on a new database: with the clients' table (materialised) or without (relay only). */
async function startHub(
  dir: string,
  tables = true,
  // A read token for every bucket lets a test read GET /v1/status; it also makes every bucket one the hub may serve.
  statusReader = false,
): Promise<{ url: string; db: string; child: ChildProcess }> {
  const db = join(dir, "hub.db");
  if (tables) {
    sql(db, "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
    expect((await tidewire(["init", db, "--table", "items"])).code).toBe(0);
  }
  const tokens = join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({
      tokens: [
        { token: TOKEN, buckets: ["default"], access: "read-write" },
        { token: OTHER, buckets: ["other"], access: "read-write" },
        ...(statusReader ? [{ token: WATCHER, buckets: "*", access: "read" }] : []),
      ],
    }),
  );
  // A relay-only hub takes the clients' new table from a read-write token only when it declares it.
  const declare = tables ? [] : ["--table", "items=default"];
  const run = tidewire(["serve", "--db", db, "--port", "0", "--tokens-file", tokens, ...declare]);
  const url = await listeningUrl(run.child);
  return { url, db, child: run.child };
}

async function client(dir: string, name: string): Promise<string> {
  const db = join(dir, `${name}.db`);
  sql(db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
  expect((await tidewire(["init", db, "--table", "items"])).code).toBe(0);
  return db;
}

function sync(db: string, url: string, ...extra: string[]) {
  return tidewire(["sync", db, "--remote", url, "--token", TOKEN, "--once", "--json", ...extra]);
}

/** A hub whose database holds `rows` items, tracked by the hub when it starts. */
async function hubWithItems(dir: string, rows: number) {
  sql(
    join(dir, "hub.db"),
    `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows})
     INSERT INTO items SELECT i, 'row ' || i, i FROM n;`,
  );
  return startHub(dir, true);
}

// Every step is a CLI process (about 2 s to start beside two busy loops on 2 cores): tests here took
// 13-60 s under that load, and the converging one hit the 60 s default. The timeout only decides how
// long a hung process takes to be reported.
describe("tidewire sync, end to end", { timeout: 180_000 }, () => {
  it("a hub and three clients written by the sqlite3 shell converge, conflicting edits included", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const clients = [await client(dir, "c1"), await client(dir, "c2"), await client(dir, "c3")];
    // Each writes its own rows and, concurrently, the same rows 1-5 with its own values.
    clients.forEach((db, i) => {
      const own = Array.from({ length: 20 }, (_, k) => `(${100 * (i + 1) + k}, 'c${i + 1}-${k}', ${k})`).join(
        ", ",
      );
      const shared = [1, 2, 3, 4, 5].map((id) => `(${id}, 'c${i + 1}', ${id * 10 + i})`).join(", ");
      sql(db, `INSERT INTO items VALUES ${own}; INSERT INTO items VALUES ${shared};`);
    });
    // All three sync at once, then once more each so everyone sees everyone.
    const first = await Promise.all(clients.map((db) => sync(db, hub.url)));
    for (const r of first) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, buckets: ["default"], pushed: 25 });
    }
    for (const db of clients) expect((await sync(db, hub.url)).code).toBe(0);
    const converged = sql(hub.db, ROWS);
    expect(converged.trim().split("\n")).toHaveLength(65);
    for (const db of clients) expect(sql(db, ROWS)).toBe(converged);

    // Concurrent conflicting edits of the same rows and a delete, with the shell, then sync all at once, twice.
    clients.forEach((db, i) => {
      sql(db, `UPDATE items SET name = 'edit-${i + 1}', qty = qty + ${i + 1} WHERE id IN (1, 2, 101, 201);`);
    });
    sql(clients[1]!, "DELETE FROM items WHERE id IN (3, 301);");
    sql(clients[2]!, "UPDATE items SET qty = 999 WHERE id = 3; INSERT INTO items VALUES (999, 'late', 1);");
    for (let round = 0; round < 2; round++) {
      const runs = await Promise.all(clients.map((db) => sync(db, hub.url)));
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
    }
    const final = sql(hub.db, ROWS);
    for (const db of clients) expect(sql(db, ROWS)).toBe(final);
    const ids = final
      .trim()
      .split("\n")
      .map((l) => Number(l.split("|")[0]));
    // Row 3 was deleted concurrently with an update: the update does not resurrect it.
    expect(ids).not.toContain(3);
    expect(ids).not.toContain(301);
    expect(ids).toContain(999);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(64);
    hub.child.kill("SIGTERM");
  });

  it("--watch pulls another client's write at once through a relay-only hub's notice, and stops on SIGTERM", async () => {
    const dir = tempDir();
    // The hub has no items table: it keeps and serves the bucket's log all the same.
    const hub = await startHub(dir, false, true);
    const [a, b] = [await client(dir, "a"), await client(dir, "b")];
    const watchA = tidewire([
      "sync",
      a,
      "--remote",
      hub.url,
      "--token",
      TOKEN,
      "--watch",
      "--interval",
      "1h",
      "--json",
    ]);
    const watchB = tidewire([
      "sync",
      b,
      "--remote",
      hub.url,
      "--token",
      TOKEN,
      "--watch",
      "--interval",
      "150ms",
      "--json",
    ]);
    // b writes only once A has finished a first pull and listens: then only a notice brings the row.
    const nodeA = nodeIdOf(a);
    await waitFor(
      async () => {
        const res = await fetch(`${hub.url}/v1/status`, { headers: { authorization: `Bearer ${WATCHER}` } });
        const status = (await res.json()) as {
          hub: { liveSubscribers: number };
          clients: Array<{ nodeId: string; lastAction: string }>;
        };
        const seen = status.clients.find((c) => c.nodeId === nodeA);
        // Both watchers listen (A and B), and the last thing A did was a pull.
        return status.hub.liveSubscribers >= 2 && seen?.lastAction === "pull";
      },
      "A's first pull and both live subscriptions",
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    sql(b, "INSERT INTO items VALUES (1, 'from b', 1);");
    // A polls once an hour: only the live notice can bring the row this fast. The 30 s include b's
    // own start-up and first push, which a loaded machine can stretch to several seconds.
    await waitFor(() => sql(a, ROWS) === "1|from b|1\n", "a to see b's row", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    watchA.child.kill("SIGTERM");
    watchB.child.kill("SIGINT");
    const [ra, rb] = await Promise.all([watchA, watchB]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    const summary = JSON.parse(ra.stdout);
    expect(summary).toMatchObject({ ok: true, failures: 0, pulled: 1 });
    expect(summary.cycles).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(rb.stdout)).toMatchObject({ ok: true, pushed: 1 });
    hub.child.kill("SIGTERM");
  });

  it("--watch is told at once of a write another program makes to the hub's own table", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const a = await client(dir, "a");
    const watch = tidewire(["sync", a, "--remote", hub.url, "--token", TOKEN, "--watch", "--interval", "1h"]);
    await new Promise((r) => setTimeout(r, 500));
    // Neither a push nor a poll (A polls once an hour): only the hub's watch on its file can tell A.
    sql(hub.db, "INSERT INTO items VALUES (7, 'from the shell', 7);");
    await waitFor(() => sql(a, ROWS) === "7|from the shell|7\n", "a to see the hub's own row", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    watch.child.kill("SIGTERM");
    expect((await watch).code).toBe(0);
    hub.child.kill("SIGTERM");
  });

  it("an initial sync SIGKILLed mid-way resumes from its last batch, not from zero", async () => {
    const dir = tempDir();
    const hub = await hubWithItems(dir, 40_000);
    const c = await client(dir, "c");
    const first = tidewire(["sync", c, "--remote", hub.url, "--token", TOKEN, "--direction", "pull"]);
    const cursor = () =>
      Number(
        sql(c, "SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM tw_cursors WHERE direction = 'pull';"),
      );
    await waitFor(() => cursor() > 0 || first.child.exitCode !== null, "a first batch", {
      timeoutMs: 20_000,
      intervalMs: 5,
    });
    first.child.kill("SIGKILL");
    await first;
    const saved = cursor();
    const had = Number(sql(c, "SELECT count(*) FROM items;"));
    expect(saved).toBeGreaterThan(0);
    expect(had).toBeGreaterThan(0);
    expect(had).toBeLessThan(40_000);
    const second = await sync(c, hub.url, "--direction", "pull");
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    // Everything after the saved cursor, and at most the one batch that was in flight again.
    expect(summary.pulled).toBeLessThanOrEqual(40_000 - had + 1000);
    expect(summary.pulled).toBeGreaterThan(0);
    expect(sql(c, ROWS)).toBe(sql(hub.db, ROWS));
    hub.child.kill("SIGTERM");
  });

  it("draws the initial sync's progress line only on a terminal", async () => {
    const dir = tempDir();
    const hub = await hubWithItems(dir, 5_000);
    const c = await client(dir, "c");
    // util-linux's script gives the command a pseudo-terminal for stdout and stderr.
    const command = [process.execPath, CLI, "sync", c, "--remote", hub.url, "--token", TOKEN].join(" ");
    const tty = execFileSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8" });
    // Each redraw returns the carriage and clears the line.
    // A bar from the saved cursor to the hub's head: partway, then full.
    expect(tty).toContain(`\r${String.fromCharCode(27)}[Kpulling `);
    expect(tty).toMatch(/pulling █*░+ \d{1,2}% [\d,]+ changes, [\d,]+\/s/);
    expect(tty).toMatch(/pulling █{24} 100% 5,000 changes, [\d,]+\/s done/);
    expect(tty).toMatch(/pushed 0, pulled 5000 \(5000 applied\)/);
    const piped = await tidewire(["sync", c, "--remote", hub.url, "--token", TOKEN]);
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe("");
    hub.child.kill("SIGTERM");
  });

  it("exits 1 on a refused or unreachable hub, 2 on usage errors, with one error line", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const db = await client(dir, "c");
    const wrong = await tidewire(["sync", db, "--remote", hub.url, "--token", "not-the-token-000000"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe(
      `tidewire: the hub at ${hub.url} refused the token (--token or TIDEWIRE_TOKEN): it is not one the hub knows\n`,
    );
    const bucket = await sync(db, hub.url, "--bucket", "nope");
    expect(bucket.code).toBe(1);
    expect(JSON.parse(bucket.stdout)).toEqual({
      ok: false,
      error: {
        code: "ERR_UNKNOWN_BUCKET",
        message: `${hub.url} refused the handshake: the hub serves no bucket "nope"; sync only the buckets it serves (--bucket)`,
      },
    });
    hub.child.kill("SIGTERM");
    await new Promise((r) => hub.child.on("exit", r));
    const down = await sync(db, hub.url);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /^tidewire: \/v1\/handshake: cannot reach http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    expect((await tidewire(["sync", db, "--remote", "ftp://x"])).code).toBe(2);
    expect((await tidewire(["sync", db, "--remote", hub.url, "--direction", "up"])).code).toBe(2);
    expect((await tidewire(["sync", db, "--remote", hub.url, "--once", "--watch"])).code).toBe(2);
    const missing = await tidewire(["sync", join(dir, "none.db"), "--remote", hub.url]);
    expect(missing.code).toBe(1);
    expect(existsSync(join(dir, "none.db"))).toBe(false);
    // The generated token was never written: this hub was given one.
    expect(existsSync(`${hub.db}.token`)).toBe(false);
    expect(readFileSync(hub.db).subarray(0, 15).toString()).toBe("SQLite format 3");
  });
});

/** `tidewire serve --token` (every bucket: GET /v1/status answers it) on `db`, at `port` (0: any). */
async function serveWithToken(db: string, port: number) {
  const run = tidewire(["serve", "--db", db, "--port", String(port), "--token", TOKEN]);
  const url = await listeningUrl(run.child);
  return { url, child: run.child, port: Number(new URL(url).port) };
}

/** The hub's record of one client (GET /v1/status), or undefined before it is heard from. */
async function clientOf(url: string, nodeId: string) {
  const res = await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const status = (await res.json()) as {
    clients: Array<{ nodeId: string; lastSeenAt: number; lastAction: string }>;
  };
  return status.clients.find((c) => c.nodeId === nodeId);
}

function nodeIdOf(db: string): string {
  return sql(db, "SELECT node FROM tw_clock WHERE id = 0;").trim();
}

function stopped(child: ChildProcess): Promise<unknown> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once("exit", r));
}

describe("tidewire sync's knobs", { timeout: 180_000 }, () => {
  it("says which refusal stopped the handshake, with the hub's code, and exits 1, --watch included (not for a hub down)", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const db = await client(dir, "c");
    const noToken = await tidewire(["sync", db, "--remote", hub.url, "--json"]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toBe(
      `tidewire: the hub at ${hub.url} requires a token: pass --token or set TIDEWIRE_TOKEN\n`,
    );
    expect(JSON.parse(noToken.stdout).error.code).toBe("ERR_UNAUTHORIZED");
    const forbidden = await sync(db, hub.url, "--bucket", "other");
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toBe(
      `tidewire: ${hub.url} refused the handshake: this token may not read bucket "other"; use a token for that bucket, or leave it out (--bucket)\n`,
    );
    expect(JSON.parse(forbidden.stdout).error.code).toBe("ERR_FORBIDDEN_BUCKET");
    // --watch stops at a refused first handshake instead of retrying it for ever.
    const watch = await tidewire([
      "sync",
      db,
      "--remote",
      hub.url,
      "--token",
      "not-the-token-000000",
      "--watch",
    ]);
    expect(watch.code).toBe(1);
    expect(watch.stderr).toMatch(/^tidewire: the hub at \S+ refused the token \(--token or TIDEWIRE_TOKEN\)/);
    hub.child.kill("SIGTERM");
    await stopped(hub.child);
    // A hub it cannot reach yet is waited for, not given up on: until SIGTERM, which ends the run well.
    const down = tidewire(["sync", db, "--remote", hub.url, "--token", TOKEN, "--watch", "--json"]);
    let waiting = "";
    down.child.stderr!.on("data", (d: Buffer) => {
      waiting += String(d);
    });
    await waitFor(() => (waiting.match(/sync failed/g) ?? []).length >= 2, "two tries", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    expect(waiting).toMatch(
      /^tidewire: sync failed: \/v1\/handshake: cannot reach .*ECONNREFUSED.*; retrying in [\d.]+ s$/m,
    );
    down.child.kill("SIGTERM");
    const gaveUp = await down;
    expect(gaveUp.code).toBe(0);
    expect(JSON.parse(gaveUp.stdout)).toMatchObject({ ok: true, cycles: 0 });
    expect(JSON.parse(gaveUp.stdout).failures).toBeGreaterThanOrEqual(2);

    // A hub of another protocol version, as a newer tidewire would answer.
    const newer = createServer((req, res) => {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          error: {
            code: "ERR_PROTOCOL_VERSION",
            message: "protocol version 1 is not supported: this hub speaks version 2",
          },
        }),
      );
      req.resume();
    });
    await new Promise<void>((r) => newer.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(newer.address() as { port: number }).port}`;
    try {
      const version = await sync(db, url);
      expect(version.code).toBe(1);
      expect(version.stderr).toBe(
        `tidewire: the hub at ${url} speaks another protocol version (protocol version 1 is not supported: this hub speaks version 2); run versions of tidewire that share one\n`,
      );
      expect(JSON.parse(version.stdout).error.code).toBe("ERR_PROTOCOL_VERSION");
    } finally {
      newer.close();
    }
  });

  it("--pull-interval and --push-interval each keep their own pace", async () => {
    const dir = tempDir();
    const hubDb = join(dir, "hub.db");
    sql(hubDb, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
    expect((await tidewire(["init", hubDb, "--table", "items"])).code).toBe(0);
    const hub = await serveWithToken(hubDb, 0);
    const c = await client(dir, "c");
    const node = nodeIdOf(c);
    sql(c, "INSERT INTO items VALUES (1, 'first cycle', 1);");
    const flags = ["sync", c, "--remote", hub.url, "--token", TOKEN, "--watch", "--json"];
    const pulling = tidewire([...flags, "--push-interval", "1h", "--pull-interval", "100ms"]);
    await waitFor(() => sql(hubDb, ROWS) === "1|first cycle|1\n", "the first cycle's push", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    sql(c, "INSERT INTO items VALUES (2, 'waits for the push interval', 2);");
    // Three pulls seen by the hub after the write: the pull leg keeps its 100 ms pace...
    const seen = new Set<number>();
    await waitFor(
      async () => {
        const me = await clientOf(hub.url, node);
        if (me?.lastAction === "pull") seen.add(me.lastSeenAt);
        return seen.size >= 3;
      },
      "three pulls",
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    // ...and the push leg its hour: the second row is still only here.
    expect(sql(hubDb, ROWS)).toBe("1|first cycle|1\n");
    pulling.child.kill("SIGTERM");
    const summary = JSON.parse((await pulling).stdout);
    expect(summary).toMatchObject({ ok: true, pushed: 1, failures: 0, warnings: 0 });
    expect(summary.cycles).toBeGreaterThanOrEqual(4);

    const pushing = tidewire([...flags, "--push-interval", "100ms", "--pull-interval", "1h"]);
    sql(c, "INSERT INTO items VALUES (3, 'pushed at its pace', 3);");
    await waitFor(
      () => sql(hubDb, "SELECT count(*) FROM items;") === "3\n" || pushing.child.exitCode !== null,
      "rows 2 and 3 at the hub",
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    pushing.child.kill("SIGTERM");
    const pushed = await pushing;
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({ ok: true, pushed: 2 });
    expect(sql(hubDb, "SELECT count(*) FROM items;")).toBe("3\n");
    expect((await tidewire([...flags, "--push-interval", "soon"])).code).toBe(2);
    expect((await tidewire([...flags, "--warn-after-failures", "-1"])).code).toBe(2);
    hub.child.kill("SIGTERM");
  });

  it("--warn-after-failures warns once while the hub is down, and says when it is back", async () => {
    const dir = tempDir();
    const hubDb = join(dir, "hub.db");
    sql(hubDb, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
    expect((await tidewire(["init", hubDb, "--table", "items"])).code).toBe(0);
    const hub = await serveWithToken(hubDb, 0);
    const c = await client(dir, "c");
    const watch = tidewire([
      ...["sync", c, "--remote", hub.url, "--token", TOKEN, "--watch", "--json"],
      ...["--interval", "100ms", "--max-backoff", "100ms", "--warn-after-failures", "2"],
    ]);
    let stderr = "";
    watch.child.stderr!.on("data", (d: Buffer) => {
      stderr += String(d);
    });
    await waitFor(async () => (await clientOf(hub.url, nodeIdOf(c))) !== undefined, "the first handshake", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    hub.child.kill("SIGTERM");
    await stopped(hub.child);
    await waitFor(() => /sync failed(.|\n)*sync failed(.|\n)*sync failed/.test(stderr), "three failures", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    const warnings = stderr.match(/^tidewire: warning: .*$/gm) ?? [];
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      new RegExp(
        `^tidewire: warning: sync with ${hub.url} has failed 2 times in a row since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: .*cannot reach`,
      ),
    );
    const back = await serveWithToken(hubDb, hub.port);
    await waitFor(() => /recovered after/.test(stderr), "the recovery", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    expect(stderr).toMatch(
      new RegExp(`^tidewire: sync with ${hub.url} recovered after \\d+ failed cycles over [\\d.]+ s$`, "m"),
    );
    watch.child.kill("SIGTERM");
    const summary = JSON.parse((await watch).stdout);
    expect(summary).toMatchObject({ ok: true, warnings: 1 });
    expect(summary.failures).toBeGreaterThanOrEqual(3);
    back.child.kill("SIGTERM");
  });
});

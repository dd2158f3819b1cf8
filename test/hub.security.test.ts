/**
 * The hub under attack, against a real daemon (startDaemon) on 127.0.0.1:
 * a token of one bucket squatting a table another bucket owns, a push moving
 * a table across buckets, a bucket-limited token against every endpoint,
 * pushes that break the hub's constraints or a typed key, a full disk, a bad
 * `<db>.token`, unknown paths, and clients that stall mid-request. Each
 * attack is one test, and each failed before the hub checked it.
 */
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type Daemon, type DaemonOptions, startDaemon } from "../src/daemon/daemon.js";
import { buildServer } from "../src/daemon/server.js";
import { Hub } from "../src/hub/hub.js";
import { pushRefusal } from "../src/hub/refusals.js";
import { createLogger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { runNode, useTempDirs, waitFor } from "./helpers.js";
import { openItems } from "./sync-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");

const tempDir = useTempDirs("tidewire-security-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const ADMIN = "admin-token-000000001";
const WRITER_A = "bucket-a-writer-00002";
const WRITER_B = "bucket-b-writer-00003";
const READER_A = "bucket-a-reader-00004";

type Answer = {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
};

async function daemon(options: Partial<DaemonOptions> & { setup?: (dbPath: string) => void } = {}) {
  const dir = tempDir();
  const dbPath = join(dir, "hub.db");
  options.setup?.(dbPath);
  let tokensFile = options.tokensFile;
  if (tokensFile === undefined && options.token === undefined) {
    tokensFile = join(dir, "tokens.json");
    writeFileSync(
      tokensFile,
      JSON.stringify({
        tokens: [
          { token: ADMIN, buckets: "*", access: "admin", name: "admin" },
          { token: WRITER_A, buckets: ["a"], access: "read-write", name: "writer-a" },
          { token: WRITER_B, buckets: ["b"], access: "read-write", name: "writer-b" },
          { token: READER_A, buckets: ["a"], access: "read", name: "reader-a" },
        ],
      }),
      { mode: 0o600 },
    );
  }
  const { setup: _, ...rest } = options;
  const d = await startDaemon({
    dbPath,
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ level: "silent" }),
    rateLimitPerSecond: 0,
    ...rest,
    tokensFile,
  });
  cleanup.push(() => d.stop());
  return d;
}

async function call(d: Daemon, path: string, body: unknown, token: string | null, method = "POST") {
  const res = await fetch(`${d.url}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} } as Answer;
}

let clock = 0;
/** A change as a client sends it, stamped now (the hub refuses clocks far ahead). */
function change(table: string, bucket: string, id: unknown, columns: Record<string, unknown> = {}) {
  const hlc = ((BigInt(Date.now()) << 16n) + BigInt(++clock % 60_000)).toString(16).padStart(16, "0");
  return { table, bucket, pk: [id], op: "insert", columns, hlc, origin: "client-x", seq: clock };
}

const push = (d: Daemon, token: string, changes: unknown[]) =>
  call(d, "/v1/push", { nodeId: "client-x", changes, cursor: "1" }, token);
const pull = (d: Daemon, token: string, buckets: string[]) =>
  call(d, "/v1/pull", { nodeId: "client-y", cursor: "0", buckets, limit: 100 }, token);

function refused(res: Answer, status: number, code: string, message: RegExp) {
  expect({ status: res.status, code: res.body.error?.code }).toEqual({ status, code });
  expect(res.body.error?.message).toMatch(message);
}

describe("the bucket a push is checked against is the replica's", () => {
  const writerOf = (bucket: string) => ({ id: bucket, buckets: new Set([bucket]), write: true });

  it("a change that claims another bucket than the table's is judged by the table's, inside the apply", () => {
    const dir = tempDir();
    const replica = openItems(dir, "hub", "a");
    cleanup.push(() => replica.close());
    const hub = new Hub(replica);
    const sender = openItems(dir, "sender", "b");
    cleanup.push(() => sender.close());
    sender.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const claimed = sender.changesSince(0).changes;
    expect(claimed).toMatchObject([{ table: "items", bucket: "b" }]);
    const body = { nodeId: "sender", changes: claimed, cursor: "1" };
    // A writer of the bucket the change claims may not write the table the replica files in "a".
    expect(() => hub.push(body, writerOf("b"))).toThrow(
      /table "items" is in bucket "a", which this token may not write; nothing applied/,
    );
    expect(replica.stats().entries).toBe(0);
    expect(replica.store.db.prepare("SELECT count(*) FROM items").pluck().get()).toBe(0);
    // The replica's answer reaches the authorizer while the batch's transaction is open.
    const told: Array<[string, string, boolean]> = [];
    const authorize = (table: string, bucket: string) => {
      told.push([table, bucket, replica.store.db.inTransaction]);
      throw new Error("refused by the test");
    };
    expect(() => replica.apply(claimed, { from: "sender", authorize })).toThrow("refused by the test");
    expect(told).toEqual([["items", "a", true]]);
    expect(replica.stats().entries).toBe(0);
    // A writer of the table's bucket is let in, and the change is served under "a", never "b".
    expect(hub.push(body, writerOf("a"))).toMatchObject({ received: 1, applied: 1 });
    const page = hub.pull({ nodeId: "reader", cursor: "0", buckets: ["a"], limit: 10 }, writerOf("a"));
    expect(page.changes).toMatchObject([{ table: "items", bucket: "a", pk: [1] }]);
    expect(() =>
      hub.pull({ nodeId: "reader", cursor: "0", buckets: ["b"], limit: 10 }, writerOf("b")),
    ).toThrow(/serves no bucket "b"/);
  });

  it("the hub's relay mode is its replica's, never a setting of its own", () => {
    const dir = tempDir();
    const plain = openItems(dir, "plain");
    const relay = Replica.open(join(dir, "relay.db"), { nodeId: "relay", relay: true });
    cleanup.push(
      () => plain.close(),
      () => relay.close(),
    );
    expect([new Hub(plain).relay, new Hub(relay).relay]).toEqual([false, true]);
  });
});

describe("bucket isolation on a relay hub", () => {
  it("a writer of bucket a cannot squat a table no bucket has yet; the real owner can add it when declared", async () => {
    const d = await daemon({ tables: { orders: "b" } });
    refused(
      await push(d, WRITER_A, [change("orders", "a", 1, { total: 5 })]),
      422,
      "ERR_TABLE_BUCKET",
      /table "orders" is declared in bucket "b" on this hub, not "a"/,
    );
    refused(
      await push(d, WRITER_A, [change("invoices", "a", 1, { total: 5 })]),
      403,
      "ERR_ADMIN_REQUIRED",
      /table "invoices" is new to this hub.*needs a token with admin access/,
    );
    refused(
      await push(d, WRITER_A, [change("orders", "b", 1, { total: 5 })]),
      403,
      "ERR_FORBIDDEN_BUCKET",
      /may not write bucket "b"/,
    );
    expect(d.hub.replica.relayedTables()).toEqual([]);
    expect(d.hub.replica.stats().entries).toBe(0);
    // The owner's token adds it, as declared, and its readers get it.
    expect((await push(d, WRITER_B, [change("orders", "b", 1, { total: 5 })])).status).toBe(200);
    expect(d.hub.replica.relayedTables()).toMatchObject([{ table: "orders", bucket: "b" }]);
    const page = await pull(d, WRITER_B, ["b"]);
    expect(page.body.changes).toMatchObject([{ table: "orders", bucket: "b", pk: [1] }]);
    // An admin may add an undeclared table to any bucket.
    expect((await push(d, ADMIN, [change("invoices", "a", 1, { total: 5 })])).status).toBe(200);
    expect(d.hub.replica.relayedTables().map((t) => [t.table, t.bucket])).toEqual([
      ["invoices", "a"],
      ["orders", "b"],
    ]);
  });

  it("a table declared in a tokens file's entry joins that entry's bucket; a bad declaration refuses the start", async () => {
    const dir = tempDir();
    const tokensFile = join(dir, "tokens.json");
    writeFileSync(
      tokensFile,
      JSON.stringify({
        tokens: [{ token: WRITER_B, buckets: ["b"], access: "read-write", tables: ["orders"] }],
      }),
    );
    const d = await daemon({ tokensFile });
    expect((await push(d, WRITER_B, [change("orders", "b", 1)])).status).toBe(200);
    refused(await push(d, WRITER_B, [change("lines", "b", 1)]), 403, "ERR_ADMIN_REQUIRED", /"lines" is new/);
    writeFileSync(
      tokensFile,
      JSON.stringify({ tokens: [{ token: WRITER_B, buckets: ["a", "b"], access: "admin", tables: ["x"] }] }),
    );
    await expect(daemon({ tokensFile })).rejects.toThrow(
      /tokens\.0\.tables: an entry that declares tables names one bucket/,
    );
    await expect(daemon({ tokensFile: undefined, token: ADMIN, tables: { tw_jobs: "a" } })).rejects.toThrow(
      /"tw_jobs" cannot be a synced table's name/,
    );
  });

  it("no push moves a table to another bucket, not even an admin's; its history stays with its bucket", async () => {
    const d = await daemon();
    expect((await push(d, ADMIN, [change("orders", "a", 1, { note: "written in a" })])).status).toBe(200);
    refused(
      await push(d, ADMIN, [change("orders", "b", 2, { note: "moved?" })]),
      422,
      "ERR_TABLE_BUCKET",
      /names bucket "b", but table "orders" is in bucket "a" here, and a push never moves a table/,
    );
    expect(d.hub.replica.relayedTables()).toMatchObject([{ table: "orders", bucket: "a" }]);
    expect((await pull(d, WRITER_B, ["b"])).body.changes).toEqual([]);
    // Within one batch too: a new table cannot be filed in two buckets.
    refused(
      await push(d, ADMIN, [change("lines", "a", 1), change("lines", "b", 2)]),
      422,
      "ERR_TABLE_BUCKET",
      /changes\[1\].*"lines" is in bucket "a"/,
    );
    expect(d.hub.replica.relayedTables().map((t) => t.table)).toEqual(["orders"]);
  });

  it("a bucket-limited token against every endpoint", async () => {
    const d = await daemon();
    expect((await push(d, ADMIN, [change("orders", "b", 1), change("notes", "a", 1)])).status).toBe(200);
    const hello = (buckets: string[], token: string) =>
      call(d, "/v1/handshake", { nodeId: "client-y", protocolVersion: 1, buckets }, token);
    expect((await hello(["a"], WRITER_A)).status).toBe(200);
    refused(await hello(["b"], WRITER_A), 403, "ERR_FORBIDDEN_BUCKET", /may not read bucket "b"/);
    expect((await pull(d, WRITER_A, ["a"])).body.changes).toMatchObject([{ table: "notes" }]);
    refused(await pull(d, WRITER_A, ["a", "b"]), 403, "ERR_FORBIDDEN_BUCKET", /bucket "b"/);
    // The change says bucket a; the hub files orders under b, and checks the token against that.
    refused(
      await push(d, WRITER_A, [change("notes", "a", 2), change("orders", "a", 2)]),
      422,
      "ERR_TABLE_BUCKET",
      /changes\[1\]/,
    );
    const { bucket: _, ...unlabelled } = change("orders", "a", 3);
    refused(
      await push(d, WRITER_A, [unlabelled]),
      403,
      "ERR_FORBIDDEN_BUCKET",
      /table "orders" is in bucket "b", which this token may not write/,
    );
    refused(await push(d, READER_A, [change("notes", "a", 3)]), 403, "ERR_READ_ONLY", /may only read/);
    refused(await push(d, WRITER_A, [change("fresh", "a", 1)]), 403, "ERR_ADMIN_REQUIRED", /admin access/);
    refused(
      await call(d, "/v1/status", undefined, WRITER_A, "GET"),
      403,
      "ERR_FORBIDDEN_STATUS",
      /every bucket/,
    );
    expect((await call(d, "/v1/status", undefined, ADMIN, "GET")).status).toBe(200);
    const pin = "0".repeat(64);
    refused(await call(d, `/v1/pins/${pin}`, undefined, READER_A, "GET"), 404, "ERR_PIN_NOT_FOUND", /./);
    const put = await fetch(`${d.url}/v1/pins/${pin}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${READER_A}` },
      body: "x",
    });
    expect(put.status).toBe(403);
    expect(await live(d, WRITER_A, "b")).toBe(403);
    expect(await live(d, WRITER_A, "a")).toBe(101);
    // Nothing the refusals touched changed.
    expect((await pull(d, ADMIN, ["a", "b"])).body.changes).toHaveLength(2);
  });
});

/** The status an upgrade to GET /v1/live gets: 101 when it opens. */
function live(d: Daemon, token: string, buckets: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${d.url.replace("http", "ws")}/v1/live?buckets=${buckets}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on("error", () => resolve(0));
  });
}

const SCHEMA = `
  CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    qty INTEGER CONSTRAINT qty_positive CHECK (qty >= 0),
    parent INTEGER REFERENCES items(id)
  );
  CREATE TABLE typed (id INTEGER PRIMARY KEY, n INTEGER) STRICT;`;

function withSchema(dbPath: string): void {
  const r = Replica.open(dbPath);
  r.store.db.exec(SCHEMA);
  r.track("items", { bucket: "a" });
  r.track("typed", { bucket: "a" });
  r.close();
}

describe("pushes the hub's tables refuse", () => {
  it("a push that breaks the hub's CHECK, NOT NULL, UNIQUE or FOREIGN KEY constraint or a type is kept aside, never a 500, never blocking the rest", async () => {
    const d = await daemon({ setup: withSchema });
    const ok = { name: "pen", qty: 1, parent: null };
    expect((await push(d, WRITER_A, [change("items", "a", 1, ok)])).status).toBe(200);
    // Each change the hub's schema refuses is quarantined with SQLite's reason, or
    // settled by a conflict rule; the rest of its batch applies (issue 11).
    const cases: Array<[unknown[], RegExp]> = [
      [
        [change("items", "a", 2, { ...ok, name: "cup" }), change("items", "a", 3, { ...ok, name: null })],
        /NOT NULL constraint failed: items\.name/,
      ],
      [[change("items", "a", 4, { ...ok, name: "box", qty: -1 })], /CHECK constraint failed: qty_positive/],
      [[change("items", "a", 6, { ...ok, name: "lid", parent: 999 })], /waits for its parent items \[999\]/],
      [[change("typed", "a", 1, { n: "many" })], /cannot store TEXT value in INTEGER column typed\.n/],
      [[change("typed", "a", "one", { n: 1 })], /datatype mismatch/],
    ];
    for (const [changes, reason] of cases) {
      const res = await push(d, WRITER_A, changes);
      expect(res.status).toBe(200);
      expect(d.hub.replica.conflicts().quarantined[0]?.reason).toMatch(reason);
    }
    expect(d.hub.replica.conflicts().quarantined).toHaveLength(cases.length);
    // A second row claiming a unique name: the earlier claim keeps it, the other is recorded.
    expect((await push(d, WRITER_A, [change("items", "a", 5, ok)])).status).toBe(200);
    expect(d.hub.replica.conflicts().conflicts).toMatchObject([{ kind: "unique", table: "items", pk: [5] }]);
    expect(d.store.db.prepare("SELECT id FROM items ORDER BY id").pluck().all()).toEqual([1, 2]);
    // A child before its parent in one batch is not a broken foreign key.
    const family = [
      change("items", "a", 8, { ...ok, name: "kid", parent: 7 }),
      change("items", "a", 7, { ...ok, name: "mum" }),
    ];
    expect((await push(d, WRITER_A, family)).status).toBe(200);
    expect(d.store.db.prepare("SELECT count(*) FROM items").pluck().get()).toBe(4);
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
  });

  it("a refused batch leaves no new table behind for a later push to find", async () => {
    const d = await daemon({ setup: withSchema });
    const batch = [change("ghosts", "a", 1), { ...change("items", "a", 1, { name: "x" }), pk: [1, 2] }];
    refused(
      await push(d, ADMIN, batch),
      422,
      "ERR_INVALID_CHANGE",
      /changes\[1\].*key of 2 parts; items has 1/,
    );
    expect(d.hub.replica.relayedTables()).toEqual([]);
    // Were "ghosts" still in the catalog, this writer would add to a table nobody declared.
    refused(
      await push(d, WRITER_A, [change("ghosts", "a", 2)]),
      403,
      "ERR_ADMIN_REQUIRED",
      /"ghosts" is new/,
    );
    expect(d.hub.replica.stats().entries).toBe(0);
  });

  it("maps what escapes the replica: constraint and type 422, full disk 507, anything else the hub's", () => {
    const r = Replica.open(join(tempDir(), "map.db"));
    cleanup.push(() => r.close());
    const c = change("t", "a", 1) as never;
    const map = (code: string, message = "x") =>
      pushRefusal(new Database.SqliteError(message, code), r, [c], "n");
    expect(map("SQLITE_CONSTRAINT_CHECK", "CHECK constraint failed: c")).toMatchObject({
      status: 422,
      code: "ERR_CONSTRAINT",
    });
    expect(map("SQLITE_CONSTRAINT_DATATYPE")).toMatchObject({ status: 422, code: "ERR_CONSTRAINT" });
    expect(map("SQLITE_MISMATCH")).toMatchObject({ status: 422, code: "ERR_CONSTRAINT" });
    expect(map("SQLITE_FULL")).toMatchObject({ status: 507, code: "ERR_DISK_FULL" });
    expect(map("SQLITE_TOOBIG")).toMatchObject({ status: 413 });
    expect(map("SQLITE_IOERR")).toBeNull();
    expect(pushRefusal(new Error("bug"), r, [c], "n")).toBeNull();
  });

  it("a full disk is a 507 with a clear message, and the hub takes pushes again once there is room", async () => {
    const d = await daemon({ setup: withSchema });
    const db = d.store.db;
    const pages = db.pragma("page_count", { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 2}`);
    const big = Array.from({ length: 20 }, (_, i) =>
      change("items", "a", i + 1, { name: `n${i}`.padEnd(4000, "x"), qty: 1 }),
    );
    refused(await push(d, WRITER_A, big), 507, "ERR_DISK_FULL", /disk is full.*retried once space is freed/);
    db.pragma("max_page_count = 1073741823");
    expect((await push(d, WRITER_A, big)).status).toBe(200);
  });

  it("a client does not retry a refused push as if the hub had failed: it waits its longest backoff", async () => {
    const d = await daemon({ setup: withSchema });
    const dir = tempDir();
    const client = Replica.open(join(dir, "client.db"), { nodeId: "client-z" });
    cleanup.push(() => client.close());
    // A table the hub has not declared, pushed by a token that is not admin: refused (403).
    client.store.db.exec("CREATE TABLE extra (id INTEGER PRIMARY KEY, v TEXT)");
    client.track("extra", { bucket: "a" });
    client.store.db.exec("INSERT INTO extra VALUES (1, 'x')");
    const transport = new HttpTransport(d.url, { token: WRITER_A });
    const manager = new SyncManager(client, transport, {
      buckets: ["a"],
      direction: "push",
      retry: { initialMs: 10, maxMs: 120_000 },
    });
    cleanup.push(() => transport.close());
    cleanup.push(() => manager.stop());
    const failures: Array<[Error, number | undefined]> = [];
    manager.on("failed", (err, retryIn) => failures.push([err, retryIn]));
    manager.start();
    await waitFor(() => failures.length > 0, "the refused push");
    expect(failures[0]![0].message).toMatch(/"extra" is new/);
    expect(failures[0]![1]).toBe(120_000);
  });
});

describe("the token kept beside the database", () => {
  it.each([
    ["", /hub\.db\.token is empty: a token must be at least 16 printable characters/],
    ["abc\n", /hub\.db\.token holds no usable token: a token must be at least 16/],
    ["has spaces in it, long enough", /holds no usable token/],
  ])("%j refuses the start with a clear error", async (content, message) => {
    const dir = tempDir();
    const dbPath = join(dir, "hub.db");
    writeFileSync(`${dbPath}.token`, content, { mode: 0o600 });
    await expect(
      startDaemon({ dbPath, host: "127.0.0.1", port: 0, logger: createLogger({ level: "silent" }) }),
    ).rejects.toThrow(message);
  });
});

describe("tidewire serve refuses a bad declaration or token file before it starts", () => {
  it("exit 2 for a --table without a bucket or with two; exit 1 and one line for an empty <db>.token", async () => {
    if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
    const dir = tempDir();
    const db = join(dir, "hub.db");
    const serve = (...args: string[]) => runNode([CLI, "serve", "--db", db, "--port", "0", ...args], dir);
    const empty = await serve("--table", "orders=");
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/Expected a bucket name after "orders="/);
    const twice = await serve("--table", "orders=a", "--table", "orders=b");
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/--table orders is given two buckets/);
    writeFileSync(`${db}.token`, "\n", { mode: 0o600 });
    const bad = await serve();
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/hub\.db\.token is empty/);
  });
});

describe("HTTP edges", () => {
  it("an unknown path is a 404 whether or not a token comes with it", async () => {
    const d = await daemon();
    for (const path of ["/nothing", "/v1/nothing", "/v1/push/extra"]) {
      refused(await call(d, path, undefined, null, "GET"), 404, "ERR_NOT_FOUND", /no such endpoint/);
      refused(await call(d, path, undefined, "wrong-token-000000000", "GET"), 404, "ERR_NOT_FOUND", /./);
    }
    refused(await call(d, "/v1/pull", {}, null), 401, "ERR_UNAUTHORIZED", /bearer token/);
  });

  it("a client that stalls in its headers or body is cut within the request timeout; an idle one within the keep-alive timeout", async () => {
    const d = await daemon({ requestTimeoutMs: 1000, keepAliveTimeoutMs: 1000 });
    const { port } = d;
    const stall = (first: string, trickle?: string) =>
      new Promise<{ ms: number; answer: string }>((resolve) => {
        const started = Date.now();
        let answer = "";
        const s = connect(port, "127.0.0.1", () => s.write(first));
        const drip = trickle ? setInterval(() => s.writable && s.write(trickle), 200) : undefined;
        s.on("data", (b) => {
          answer += b.toString();
        });
        s.on("error", () => {});
        s.on("close", () => {
          clearInterval(drip);
          resolve({ ms: Date.now() - started, answer: answer.split("\r\n")[0]! });
        });
      });
    const [nothing, headers, body, idle] = await Promise.all([
      stall(""),
      stall("GET /healthz HTTP/1.1\r\nHost: x\r\n", "X-Slow: 1\r\n"),
      stall(
        `POST /v1/pull HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"`,
      ),
      stall("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]);
    for (const cut of [nothing, headers, body]) {
      expect(cut.ms).toBeLessThan(5_000);
      expect(cut.answer).toMatch(/^HTTP\/1\.1 408/);
    }
    expect(idle.answer).toMatch(/^HTTP\/1\.1 200/);
    expect(idle.ms).toBeGreaterThanOrEqual(900);
    expect(idle.ms).toBeLessThan(5_000);
  });

  it("the request timeout is 30 s and the keep-alive 5 s unless given; headers are bounded even without a request limit", () => {
    const store = openStore(join(tempDir(), "timeouts.db"));
    cleanup.push(() => store.close());
    const make = (requestTimeoutMs?: number, keepAliveTimeoutMs?: number) =>
      buildServer({
        store,
        queue: new Queue(store),
        logger: createLogger({ level: "silent" }),
        requestTimeoutMs,
        keepAliveTimeoutMs,
      }).server;
    expect(make()).toMatchObject({ requestTimeout: 30_000, headersTimeout: 30_000, keepAliveTimeout: 5_000 });
    expect(make(1_000, 2_000)).toMatchObject({
      requestTimeout: 1_000,
      headersTimeout: 1_000,
      keepAliveTimeout: 2_000,
    });
    expect(make(0)).toMatchObject({ requestTimeout: 0, headersTimeout: 60_000 });
  });
});

/**
 * The hub's /v1 endpoints over real HTTP on 127.0.0.1: bad input on every
 * endpoint (malformed JSON, wrong types, huge bodies, unknown buckets, a
 * token for another bucket or read-only, a wrong protocol version, changes
 * for unknown tables, no token) gets a 4xx with a clear message, nothing is
 * applied and the hub keeps answering; tokens files; the rate limit; the
 * generated token file; --insecure only on loopback; live notices over
 * WebSocket; and SyncManager over HttpTransport end to end.
 */
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildServer } from "../src/daemon/server.js";
import { Auth, resolveAuth } from "../src/hub/auth.js";
import { Hub } from "../src/hub/hub.js";
import { createLogger } from "../src/log.js";
import { registry } from "../src/metrics.js";
import { Queue } from "../src/queue/queue.js";
import { Replica } from "../src/replica/replica.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems, rows } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-hub-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const TOKEN = "full-access-token-0001";
const READER = "read-only-token-000002";
const OTHER = "other-bucket-token-003";

async function serve(options: { auth?: Auth; rateLimitPerSecond?: number; maxBytes?: number } = {}) {
  const dir = tempDir();
  const hub = hubOn(dir, "hub", { maxRows: 50, maxBytes: options.maxBytes ?? 64 * 1024 });
  hub.replica.store.db.exec("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)");
  hub.replica.track("notes", { bucket: "private" });
  const tokens = join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({
      tokens: [
        { token: TOKEN, buckets: "*", access: "read-write", name: "admin" },
        { token: READER, buckets: ["default"], access: "read" },
        { token: OTHER, buckets: ["private"], access: "read-write" },
      ],
    }),
  );
  const auth = options.auth ?? Auth.tokensFile(tokens);
  const app = buildServer({
    store: hub.replica.store,
    queue: new Queue(hub.replica.store),
    logger: createLogger({ level: "silent" }),
    hub: { hub, auth, rateLimitPerSecond: options.rateLimitPerSecond },
  });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  cleanup.push(() => hub.replica.close());
  cleanup.push(() => app.close());
  return { hub, url, dir };
}

async function post(url: string, body: unknown, token: string | null = TOKEN, type = "application/json") {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": type, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}

const change = (id: number, table = "items") => ({
  table,
  pk: [id],
  op: "insert",
  columns: { name: `n${id}`, qty: id },
  hlc: "0000018f00000000",
  origin: "client-a",
  seq: id,
});

function unchanged(hub: Hub): void {
  expect(rows(hub.replica)).toEqual([]);
  expect(hub.replica.stats().entries).toBe(0);
}

describe("the hub refuses bad input with a clear 4xx and applies nothing", () => {
  it.each([["/v1/handshake"], ["/v1/pull"], ["/v1/push"]])(
    "%s: no token, a wrong token, malformed JSON, not JSON, wrong types, a huge body",
    async (path) => {
      const { hub, url } = await serve();
      const at = `${url}${path}`;
      const cases: Array<[Awaited<ReturnType<typeof post>>, number, string, RegExp]> = [
        [await post(at, {}, null), 401, "ERR_UNAUTHORIZED", /bearer token is required/],
        [await post(at, {}, "not-a-token-at-all-xx"), 401, "ERR_UNAUTHORIZED", /bearer token/],
        [await post(at, "{bad json"), 400, "ERR_MALFORMED_JSON", /not valid JSON/],
        [await post(at, "x=1", TOKEN, "text/plain"), 415, "ERR_MEDIA_TYPE", /must be JSON/],
        [
          await post(at, { nodeId: 5, cursor: [], buckets: "default" }),
          400,
          "ERR_MALFORMED",
          /^malformed \w+: /,
        ],
        [await post(at, "[1,2,3]"), 400, "ERR_MALFORMED", /\(body\)/],
        [
          await post(at, { junk: "x".repeat(200_000) }),
          413,
          "ERR_BODY_TOO_LARGE",
          /larger than the hub accepts/,
        ],
      ];
      for (const [res, status, code, message] of cases) {
        expect(res.status).toBe(status);
        expect(res.body.error?.code).toBe(code);
        expect(res.body.error?.message).toMatch(message);
      }
      unchanged(hub);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    },
  );

  it("handshake: a wrong protocol version, an unknown bucket, a bucket the token may not read", async () => {
    const { hub, url } = await serve();
    const hs = (body: object, token = TOKEN) =>
      post(`${url}/v1/handshake`, { nodeId: "c", protocolVersion: 1, buckets: ["default"], ...body }, token);
    expect(await hs({ protocolVersion: 2 })).toEqual({
      status: 400,
      body: {
        error: {
          code: "ERR_PROTOCOL_VERSION",
          message: "protocol version 2 is not supported: this hub speaks version 1",
        },
      },
    });
    expect(await hs({ buckets: ["nope"] })).toMatchObject({
      status: 404,
      body: { error: { code: "ERR_UNKNOWN_BUCKET" } },
    });
    expect(await hs({ buckets: ["default"] }, OTHER)).toMatchObject({
      status: 403,
      body: { error: { code: "ERR_FORBIDDEN_BUCKET", message: 'this token may not read bucket "default"' } },
    });
    const ok = await hs({ capabilities: ["live", "telepathy"] });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      accepted: true,
      hubNodeId: "hub",
      protocolVersion: 1,
      capabilities: ["live"],
    });
    unchanged(hub);
  });

  it("pull: an unknown bucket, another token's bucket, a bad cursor; limits cap the page", async () => {
    const { hub, url } = await serve();
    const pull = (body: object, token = TOKEN) =>
      post(`${url}/v1/pull`, { nodeId: "c", cursor: "0", buckets: ["default"], limit: 10, ...body }, token);
    expect((await pull({ buckets: ["nope"] })).status).toBe(404);
    expect((await pull({ buckets: ["private"] }, READER)).status).toBe(403);
    expect((await pull({ cursor: "-3" })).body.error?.message).toMatch(/cursor: must be a sequence number/);
    expect((await pull({ limit: 0 })).status).toBe(400);
    const insert = hub.replica.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    hub.replica.store.write(() => {
      for (let i = 1; i <= 120; i++) insert.run(i, "x", i);
    });
    const page = await pull({ limit: 1000 }, READER);
    expect(page.status).toBe(200);
    expect(page.body).toMatchObject({ hasMore: true, cursor: "50" });
    expect((page.body as { changes: unknown[] }).changes).toHaveLength(50);
  });

  it("push: read-only token, another bucket, unknown table, a bad change, a batch over the limit", async () => {
    const { hub, url } = await serve();
    const push = (changes: unknown[], token = TOKEN) =>
      post(`${url}/v1/push`, { nodeId: "client-a", changes, cursor: "9" }, token);
    const refusals: Array<[Awaited<ReturnType<typeof post>>, number, string, RegExp]> = [
      [await push([change(1)], READER), 403, "ERR_READ_ONLY", /may only read/],
      [
        await push([change(1)], OTHER),
        403,
        "ERR_FORBIDDEN_BUCKET",
        /changes\[0\]: table "items" is in bucket "default", which this token may not write/,
      ],
      [
        await push([change(1), change(2, "ghosts")]),
        422,
        "ERR_UNKNOWN_TABLE",
        /changes\[1\] \(insert of ghosts \[2\].*\) names table "ghosts", which is not tracked here/,
      ],
      [await push([change(1), { ...change(2), pk: [1, 2] }]), 422, "ERR_INVALID_CHANGE", /changes\[1\]/],
      [
        await push([
          { ...change(1), columns: { nope: 1 } },
          { ...change(2), hlc: "ffffffffffffffff" },
        ]),
        422,
        "ERR_CLOCK_DRIFT",
        /changes\[1\]/,
      ],
      [
        await push(Array.from({ length: 51 }, (_, i) => change(i + 1))),
        413,
        "ERR_BATCH_TOO_LARGE",
        /at most 50 changes/,
      ],
      [await push([{ ...change(1), op: "merge" }]), 400, "ERR_MALFORMED", /changes\.0\.op/],
    ];
    for (const [res, status, code, message] of refusals) {
      expect(res.status).toBe(status);
      expect(res.body.error?.code).toBe(code);
      expect(res.body.error?.message).toMatch(message);
    }
    unchanged(hub);
    const ok = await push([change(1), change(2)]);
    expect(ok).toEqual({ status: 200, body: { cursor: "9", received: 2, applied: 2 } });
    expect(rows(hub.replica)).toHaveLength(2);
  });

  it("answers unknown endpoints with 404 and a plain GET /v1/live with 426", async () => {
    const { url } = await serve();
    const res = await fetch(`${url}/v1/nothing`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(404);
    const live = await fetch(`${url}/v1/live`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(live.status).toBe(426);
  });

  it("rate-limits per token with 429", async () => {
    const { url } = await serve({ rateLimitPerSecond: 5 });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push(
        (await post(`${url}/v1/handshake`, { nodeId: "c", protocolVersion: 1, buckets: ["default"] })).status,
      );
    }
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(statuses.slice(5)).toEqual([429, 429, 429]);
    // Another token has its own allowance.
    expect(
      (await post(`${url}/v1/handshake`, { nodeId: "c", protocolVersion: 1, buckets: ["default"] }, READER))
        .status,
    ).toBe(200);
  });
});

describe("a relay hub", () => {
  it("keeps and serves a bucket whose table it lacks; refuses a change that carries no bucket", async () => {
    const dir = tempDir();
    const replica = Replica.open(join(dir, "relay.db"), { nodeId: "relay", relay: true });
    cleanup.push(() => replica.close());
    const hub = new Hub(replica, { buckets: "*" });
    const scope = { id: "t", buckets: "*" as const, write: true, admin: true };
    const a = openItems(dir, "a");
    cleanup.push(() => a.close());
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const changes = a.changesSince(0).changes;
    expect(() =>
      hub.push({ nodeId: "sender", changes: changes.map(({ bucket, ...c }) => c), cursor: "1" }, scope),
    ).toThrow(/changes\[0\] \(.*\) names table "items", which is not tracked here, and has no bucket/);
    expect(hub.push({ nodeId: "sender", changes, cursor: "1" }, scope)).toEqual({
      cursor: "1",
      received: 1,
      applied: 1,
    });
    const page = hub.pull({ nodeId: "b", cursor: "0", buckets: ["default"], limit: 10 }, scope);
    expect(page.changes).toMatchObject([{ table: "items", bucket: "default", pk: [1], origin: "a" }]);
    const limited = new Hub(replica, { buckets: ["default"] });
    expect(() => limited.pull({ nodeId: "b", cursor: "0", buckets: ["other"], limit: 10 }, scope)).toThrow(
      /serves no bucket "other"/,
    );
  });
});

describe("auth setup", () => {
  it("generates a token beside the database with mode 0600, then reuses it", () => {
    const dir = tempDir();
    const dbPath = join(dir, "hub.db");
    const first = resolveAuth({ host: "127.0.0.1", dbPath });
    expect(first.generated?.path).toBe(`${dbPath}.token`);
    expect(statSync(`${dbPath}.token`).mode & 0o777).toBe(0o600);
    const again = resolveAuth({ host: "127.0.0.1", dbPath });
    expect(again.generated).toBeUndefined();
    expect(again.auth.identify(`Bearer ${first.generated!.token}`)).not.toBeNull();
    expect(again.auth.identify("Bearer wrong")).toBeNull();
    expect(again.auth.identify(undefined)).toBeNull();
  });

  it("refuses --insecure off loopback, conflicting options, short tokens and bad tokens files", () => {
    const dir = tempDir();
    const dbPath = join(dir, "hub.db");
    expect(() => resolveAuth({ host: "0.0.0.0", dbPath, insecure: true })).toThrow(
      /only be turned off on a loopback/,
    );
    expect(resolveAuth({ host: "127.0.0.1", dbPath, insecure: true }).auth.open).toBe(true);
    expect(() => resolveAuth({ host: "127.0.0.1", dbPath, insecure: true, token: TOKEN })).toThrow(
      /give one of/,
    );
    expect(() => resolveAuth({ host: "127.0.0.1", dbPath, token: "short" })).toThrow(/at least 16/);
    const bad = join(dir, "tokens.json");
    writeFileSync(bad, JSON.stringify({ tokens: [{ token: TOKEN, buckets: [], access: "read" }] }));
    expect(() => resolveAuth({ host: "127.0.0.1", dbPath, tokensFile: bad })).toThrow(/tokens\.0\.buckets/);
    expect(() => Auth.tokensFile(join(dir, "missing.json"))).toThrow(/cannot read/);
  });
});

describe("over HTTP", () => {
  it("SyncManager converges two replicas through the hub, with live notices", async () => {
    const { hub, url } = await serve({ auth: Auth.token(TOKEN), maxBytes: 4 * 1024 * 1024 });
    const dir = tempDir();
    const [a, b] = [openItems(dir, "a"), openItems(dir, "b")];
    cleanup.push(() => a.close());
    cleanup.push(() => b.close());
    const ta = new HttpTransport(url, { token: TOKEN });
    const tb = new HttpTransport(url, { token: TOKEN });
    const ma = new SyncManager(a, ta, { intervalMs: 60_000, buckets: ["default"] });
    const mb = new SyncManager(b, tb, { intervalMs: 60_000, buckets: ["default"] });
    cleanup.push(() => ta.close());
    cleanup.push(() => tb.close());
    cleanup.push(() => ma.stop());
    cleanup.push(() => mb.stop());
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    a.store.write(() => {
      for (let i = 1; i <= 500; i++) insert.run(i, `a${i}`, i);
    });
    expect(await ma.syncOnce()).toMatchObject({ pushed: 500 });
    expect(await mb.initialSync()).toMatchObject({ pulled: 500 });
    await Promise.all([ma.start(), mb.start()]);
    await waitFor(
      () => ma.status.lastSuccessAt !== undefined && mb.status.lastSuccessAt !== undefined,
      "first cycles",
    );
    b.store.db.exec("UPDATE items SET name = 'from b' WHERE id = 1");
    await mb.syncOnce();
    // Pulled by a at once on the hub's notice, not after the 60 s interval.
    await waitFor(
      () => (a.store.db.prepare("SELECT name FROM items WHERE id = 1").pluck().get() as string) === "from b",
      "a to see b's write",
      // 20 s leaves a loaded machine room and still fails a manager that waited for its 60 s timer.
      { timeoutMs: 20_000 },
    );
    expect(rows(a)).toEqual(rows(b));
    expect(rows(hub.replica)).toEqual(rows(a));
    // Per peer and bucket: cycles by result, changes each way, durations, last success.
    const text = await registry.metrics();
    const peer = `peer="${url}"`;
    expect(text).toMatch(
      new RegExp(`tidewire_sync_cycles_total\\{${peer},bucket="default",result="ok"\\} [1-9]`),
    );
    expect(text).toMatch(
      new RegExp(`tidewire_sync_changes_total\\{${peer},bucket="default",direction="push"\\} [1-9]\\d*`),
    );
    expect(text).toMatch(
      new RegExp(`tidewire_sync_changes_total\\{${peer},bucket="default",direction="pull"\\} [1-9]\\d*`),
    );
    expect(text).toMatch(new RegExp(`tidewire_sync_cycle_duration_seconds_count\\{${peer}\\} [1-9]`));
    expect(text).toMatch(new RegExp(`tidewire_sync_last_success_timestamp_seconds\\{${peer}\\} 1[0-9.e+]+`));
    // On the hub, by direction only: the client's node id is no label (see metrics.ts).
    expect(text).toMatch(/tidewire_hub_changes_total\{direction="push"\} [1-9]\d{2,}/);
    expect(text).not.toMatch(/tidewire_hub_changes_total\{[^}]*peer=/);
  });

  it("a hub that goes down: connection errors are retried, then the loop backs off and recovers", async () => {
    const dir = tempDir();
    const a = openItems(dir, "a");
    cleanup.push(() => a.close());
    const hub = hubOn(tempDir());
    cleanup.push(() => hub.replica.close());
    const listen = async (port: number) => {
      const app = buildServer({
        store: hub.replica.store,
        queue: new Queue(hub.replica.store),
        logger: createLogger({ level: "silent" }),
        hub: { hub, auth: Auth.token(TOKEN) },
      });
      const url = await app.listen({ host: "127.0.0.1", port });
      cleanup.push(() => app.close());
      return { app, port: Number(new URL(url).port) };
    };
    const first = await listen(0);
    const t = new HttpTransport(`http://127.0.0.1:${first.port}`, {
      token: TOKEN,
      retries: 1,
      retryDelayMs: 5,
    });
    // Pushes every 50 ms, pulls every minute: only the push leg can meet the hub's absence in time.
    const m = new SyncManager(a, t, {
      pushIntervalMs: 50,
      pullIntervalMs: 60_000,
      retry: { initialMs: 30, maxMs: 100, jitter: 0 },
    });
    cleanup.push(() => m.stop());
    await m.start();
    const failed: Array<[string, number | undefined]> = [];
    m.on("failed", (err, retryIn) => failed.push([err.message, retryIn]));
    await first.app.close();
    await waitFor(() => failed.length >= 3, "three failures", { timeoutMs: 30_000 });
    expect(failed[0]![0]).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(failed.slice(0, 3).map((f) => f[1])).toEqual([30, 60, 100]);
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    // The hub comes back on that port.
    await listen(first.port);
    // The backoff is capped at 100 ms: 30 s only waits out a loaded machine.
    await waitFor(() => m.status.state === "idle" && rows(hub.replica).length === 1, "recovery", {
      timeoutMs: 30_000,
    });
    expect(rows(hub.replica)).toEqual([{ id: 1, name: "pen", qty: 1 }]);
  });

  it("refuses a live subscription without a token or for a bucket it may not read", async () => {
    const { url } = await serve();
    const open = (token: string | null, buckets: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}/v1/live?buckets=${buckets}`, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => {
          ws.close();
          resolve(101);
        });
        ws.on("error", () => {});
      });
    expect(await open(null, "default")).toBe(401);
    expect(await open(READER, "private")).toBe(403);
    expect(await open(READER, "nope")).toBe(404);
    expect(await open(READER, "default")).toBe(101);
  });
});

/**
 * The sync operator's knobs, through the library: `start()` resolves on the
 * first accepted handshake, rejects with a failed one (leaving nothing
 * running) and when already started; push and pull on their own intervals;
 * a warning after N failed cycles in a row, once per streak, and a recovery
 * message. And the handshake's refusals over real HTTP against a real hub on
 * loopback: no token, a wrong token, a bucket out of scope, an unknown
 * bucket and another protocol version each with its own status, code and
 * error class, on the wire and at the client.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildServer } from "../src/daemon/server.js";
import { Auth } from "../src/hub/auth.js";
import type { Hub } from "../src/hub/hub.js";
import { createLogger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import type { Replica } from "../src/replica/replica.js";
import { PROTOCOL_VERSION, ProtocolError } from "../src/sync/protocol.js";
import { SyncManager, type SyncManagerOptions } from "../src/sync/sync-manager.js";
import { HubAuthError, HubBucketError, HubRefusedError, type Transport } from "../src/sync/transport.js";
import { HttpTransport, TransportError } from "../src/sync/transports/http.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { invalidArgument, useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems, rows } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-knobs-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function replica(dir: string, nodeId: string): Replica {
  const r = openItems(dir, nodeId);
  cleanup.push(() => r.close());
  return r;
}

function hub(dir: string): Hub {
  const h = hubOn(dir, "hub");
  cleanup.push(() => h.replica.close());
  return h;
}

function manager(r: Replica, transport: Transport, options: SyncManagerOptions = {}) {
  const m = new SyncManager(r, transport, options);
  cleanup.push(() => m.stop());
  return m;
}

/** A logger that keeps what it was told. */
function recorder() {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    lines.push({ level, msg, fields });
  };
  return { lines, logger: { warn: at("warn"), info: at("info") } as unknown as SyncManagerOptions["logger"] };
}

describe("SyncManager.start()", () => {
  it("resolves once the first handshake is accepted, and rejects a second start until stopped", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t, board] = MemoryTransport.pair(h);
    const m = manager(a, t, { intervalMs: 60_000 });
    await m.start();
    expect(board.calls.handshake).toBe(1);
    expect(m.hub).toBe("hub");
    const again = await m.start().catch((e: unknown) => e);
    expect(again).toMatchObject({ code: "ERR_ALREADY_STARTED" });
    expect((again as Error).message).toMatch(/already started/);
    expect(board.calls.handshake).toBe(1); // the refused start did nothing
    await m.stop();
    await m.start();
    await m.stop();
  });

  it("rejects with the failed handshake's error and leaves nothing running", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t, board] = MemoryTransport.pair(h);
    const m = manager(a, t, { intervalMs: 20, retry: { initialMs: 5, maxMs: 10 } });
    const retries: Array<number | undefined> = [];
    m.on("failed", (_e, retryIn) => retries.push(retryIn));
    board.offline = true;
    const err = await m.start().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    // Nothing armed: no next try was announced, and none is scheduled.
    expect(retries).toEqual([undefined]);
    expect(m.status).toMatchObject({ state: "error", failures: 1 });
    expect(m.status.nextAt).toBeUndefined();
    // Not started: a new start is allowed (not "already started"), and succeeds once the hub answers.
    board.offline = false;
    await m.start();
    // start() resolves at the handshake; the rest of its first cycle follows.
    await waitFor(() => m.status.state === "idle" && m.status.failures === 0, "the first cycle's end");
  });

  it("rejects with a protocol refusal of its own code when the hub turns down our version's handshake", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t] = MemoryTransport.pair(h);
    const refusing: Transport = {
      ...t,
      peer: "memory",
      handshake: async () => ({
        accepted: false,
        reason: "this hub is in maintenance",
        hubNodeId: "hub",
        protocolVersion: PROTOCOL_VERSION,
        capabilities: [],
        limits: { maxRows: 10, maxBytes: 1000 },
      }),
      pull: t.pull.bind(t),
      push: t.push.bind(t),
      close: t.close.bind(t),
    };
    const err = await manager(a, refusing)
      .start()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err).toMatchObject({
      code: "ERR_HANDSHAKE_REFUSED",
      message: "the hub refused the handshake: this hub is in maintenance",
    });
  });
});

describe("push and pull intervals", () => {
  it("default to intervalMs, each may be set apart, and bad ones are refused", () => {
    const dir = tempDir();
    const a = replica(dir, "a");
    const [t] = MemoryTransport.pair(hub(dir));
    const both = new SyncManager(a, t, { intervalMs: 7_000 });
    expect([both.pushIntervalMs, both.pullIntervalMs]).toEqual([7_000, 7_000]);
    const apart = new SyncManager(a, t, { intervalMs: 7_000, pullIntervalMs: 30_000 });
    expect([apart.pushIntervalMs, apart.pullIntervalMs]).toEqual([7_000, 30_000]);
    expect(new SyncManager(a, t).pushIntervalMs).toBe(5_000);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, "5s"]) {
      expect(invalidArgument(() => new SyncManager(a, t, { pushIntervalMs: bad as never })).argument).toBe(
        "pushIntervalMs",
      );
      expect(invalidArgument(() => new SyncManager(a, t, { pullIntervalMs: bad as never })).argument).toBe(
        "pullIntervalMs",
      );
    }
  });

  it("pulls on its own interval while a local write waits for the push interval", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const [a, b] = [replica(dir, "a"), replica(dir, "b")];
    const [t, board] = MemoryTransport.pair(h);
    const m = manager(a, t, { pushIntervalMs: 60_000, pullIntervalMs: 20 });
    await m.start();
    await waitFor(() => m.status.lastSuccessAt !== undefined, "the first cycle");
    a.store.db.exec("INSERT INTO items VALUES (1, 'waits for the push', 1)");
    // Another replica's row reaches a through its pulls...
    b.store.db.exec("INSERT INTO items VALUES (2, 'from b', 2)");
    await manager(b, MemoryTransport.pair(h)[0]).syncOnce();
    const pulls = board.calls.pull;
    await waitFor(() => board.calls.pull >= pulls + 5 && rows(a).length === 2, "five more pulls");
    // ...while a's own write is still waiting: no push leg ran in all those cycles.
    expect(board.calls.push).toBe(0);
    expect(rows(h.replica)).toEqual([{ id: 2, name: "from b", qty: 2 }]);
    // The loop's next wake-up is a pull's, not the push's hour away.
    await waitFor(() => m.status.nextAt !== undefined, "the armed loop");
    expect(m.status.nextAt! - Date.now()).toBeLessThan(30_000);
  });

  it("pushes on its own interval while the pull leg waits for its own", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t, board] = MemoryTransport.pair(h);
    // No live notices here: the switchboard's transport would pull at once on the hub's news.
    const quiet: Transport = {
      ...t,
      peer: "memory",
      handshake: t.handshake.bind(t),
      pull: t.pull.bind(t),
      push: t.push.bind(t),
      close: t.close.bind(t),
    };
    const m = manager(a, quiet, { pushIntervalMs: 20, pullIntervalMs: 60_000 });
    await m.start();
    await waitFor(() => m.status.lastSuccessAt !== undefined, "the first cycle");
    const pulls = board.calls.pull;
    for (let i = 1; i <= 3; i++) {
      a.store.db.exec(`INSERT INTO items VALUES (${i}, 'pushed', ${i})`);
      await waitFor(() => rows(h.replica).length === i, `row ${i} at the hub`);
    }
    expect(board.calls.push).toBeGreaterThanOrEqual(3);
    expect(board.calls.pull).toBe(pulls);
  });
});

describe("warnAfterFailures", () => {
  it("warns once per streak when it reaches N, logs it, and says when the sync recovers", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t, board] = MemoryTransport.pair(h);
    const { lines, logger } = recorder();
    const m = manager(a, t, {
      intervalMs: 5,
      retry: { initialMs: 1, maxMs: 5, jitter: 0 },
      warnAfterFailures: 3,
      logger,
    });
    const warnings: Array<[string, number, number]> = [];
    const recoveries: Array<[number, number]> = [];
    m.on("warning", (err, failures, since) => warnings.push([err.message, failures, since]));
    m.on("recovered", (failures, downMs) => recoveries.push([failures, downMs]));
    await m.start();
    const before = Date.now();
    board.offline = true;
    await waitFor(() => m.status.failures >= 6, "six failures in a row");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]![0]).toMatch(/ECONNREFUSED/);
    expect(warnings[0]![1]).toBe(3);
    expect(warnings[0]![2]).toBeGreaterThanOrEqual(before);
    expect(lines.filter((l) => l.level === "warn")).toEqual([
      {
        level: "warn",
        msg: expect.stringMatching(/^sync with memory has failed 3 times in a row: connect ECONNREFUSED/),
        fields: expect.objectContaining({ peer: "memory", failures: 3 }),
      },
    ]);
    expect(recoveries).toEqual([]);
    board.offline = false;
    await waitFor(() => recoveries.length === 1, "the recovery");
    expect(recoveries[0]![0]).toBeGreaterThanOrEqual(6);
    expect(lines.filter((l) => l.level === "info").map((l) => l.msg)).toEqual([
      expect.stringMatching(/^sync with memory recovered after \d+ failed cycles over \d+ s$/),
    ]);
    // A new streak warns again; a streak shorter than N neither warns nor recovers.
    board.offline = true;
    await waitFor(() => warnings.length === 2, "the second streak's warning");
    board.offline = false;
    await waitFor(() => recoveries.length === 2, "the second recovery");
    board.failNext(2);
    await waitFor(() => m.status.failures === 2, "a short streak");
    await waitFor(() => m.status.failures === 0 && m.status.state === "idle", "its end");
    expect([warnings.length, recoveries.length]).toEqual([2, 2]);
  });

  it("never warns with 0, defaults to 5, and refuses bad values", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t, board] = MemoryTransport.pair(h);
    expect(new SyncManager(a, t).warnAfterFailures).toBe(5);
    const m = manager(a, t, { intervalMs: 5, retry: { initialMs: 1, maxMs: 2 }, warnAfterFailures: 0 });
    let warned = 0;
    m.on("warning", () => warned++);
    await m.start();
    board.offline = true;
    await waitFor(() => m.status.failures >= 8, "eight failures");
    expect(warned).toBe(0);
    for (const bad of [-1, 1.5, Number.NaN, "5"]) {
      expect(invalidArgument(() => new SyncManager(a, t, { warnAfterFailures: bad as never })).argument).toBe(
        "warnAfterFailures",
      );
    }
    expect(invalidArgument(() => new SyncManager(a, t, { logger: {} as never })).argument).toBe("logger");
  });
});

const FULL = "knobs-full-token-000001";
const OTHER = "knobs-other-bucket-0002";

/** A hub over HTTP on loopback, with a full token and one for bucket "private" only. */
async function serve() {
  const dir = tempDir();
  const h = hub(dir);
  h.replica.store.db.exec("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)");
  h.replica.track("notes", { bucket: "private" });
  const tokens = join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({
      tokens: [
        { token: FULL, buckets: "*", access: "read-write" },
        { token: OTHER, buckets: ["private"], access: "read-write" },
      ],
    }),
  );
  const app = buildServer({
    store: h.replica.store,
    queue: new Queue(h.replica.store),
    logger: createLogger({ level: "silent" }),
    hub: { hub: h, auth: Auth.tokensFile(tokens) },
  });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  cleanup.push(() => app.close());
  return { url, hub: h };
}

/** The hub's answer to a raw handshake: status and body. */
async function rawHandshake(
  url: string,
  token: string | null,
  buckets: string[],
  version = PROTOCOL_VERSION,
) {
  const res = await fetch(`${url}/v1/handshake`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ nodeId: "raw", protocolVersion: version, buckets, capabilities: [] }),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}

/** A transport that speaks another protocol version in its handshake, as a newer client would. */
function speaking(version: number, t: HttpTransport): Transport {
  return {
    peer: t.peer,
    handshake: (req) => t.handshake({ ...req, protocolVersion: version }),
    pull: (req) => t.pull(req),
    push: (req) => t.push(req),
    close: () => t.close(),
  };
}

describe("a refused handshake over HTTP", () => {
  it("has its own status and code on the wire for auth, each bucket refusal and the protocol version", async () => {
    const { url } = await serve();
    const cases: Array<[string | null, string[], number, number, string, RegExp]> = [
      [null, ["default"], PROTOCOL_VERSION, 401, "ERR_UNAUTHORIZED", /^a bearer token is required/],
      [
        "not-a-known-token-0000",
        ["default"],
        PROTOCOL_VERSION,
        401,
        "ERR_UNAUTHORIZED",
        /not one this hub knows/,
      ],
      [OTHER, ["default"], PROTOCOL_VERSION, 403, "ERR_FORBIDDEN_BUCKET", /may not read bucket "default"/],
      [FULL, ["nope"], PROTOCOL_VERSION, 404, "ERR_UNKNOWN_BUCKET", /serves no bucket "nope"/],
      [
        FULL,
        ["default"],
        PROTOCOL_VERSION + 1,
        400,
        "ERR_PROTOCOL_VERSION",
        /protocol version \d+ is not supported/,
      ],
    ];
    for (const [token, buckets, version, status, code, message] of cases) {
      const r = await rawHandshake(url, token, buckets, version);
      expect([r.status, r.body.error?.code], `${token} ${buckets} v${version}`).toEqual([status, code]);
      expect(r.body.error?.message).toMatch(message);
    }
    expect((await rawHandshake(url, OTHER, ["private"])).status).toBe(200);
  });

  it("rejects start() with HubAuthError, HubBucketError or ProtocolError, each with the hub's code", async () => {
    const { url, hub: h } = await serve();
    const a = replica(tempDir(), "a");
    const attempt = async (transport: Transport, buckets = ["default"]) => {
      cleanup.push(() => transport.close());
      const m = manager(a, transport, { buckets, intervalMs: 60_000 });
      return m.start().then(
        () => null,
        (e: unknown) => e as Error,
      );
    };
    const noToken = await attempt(new HttpTransport(url, { retries: 0 }));
    expect(noToken).toBeInstanceOf(HubAuthError);
    expect(noToken).toMatchObject({ status: 401, code: "ERR_UNAUTHORIZED", permanent: true });
    expect(noToken!.message).toMatch(/^a bearer token is required/);

    const wrong = await attempt(new HttpTransport(url, { token: "not-a-known-token-0000", retries: 0 }));
    expect(wrong).toBeInstanceOf(HubAuthError);
    expect(wrong!.message).toMatch(/not one this hub knows/);

    const forbidden = await attempt(new HttpTransport(url, { token: OTHER, retries: 0 }));
    expect(forbidden).toBeInstanceOf(HubBucketError);
    expect(forbidden).toMatchObject({ status: 403, code: "ERR_FORBIDDEN_BUCKET" });

    const unknown = await attempt(new HttpTransport(url, { token: FULL, retries: 0 }), ["nope"]);
    expect(unknown).toBeInstanceOf(HubBucketError);
    expect(unknown).toMatchObject({ status: 404, code: "ERR_UNKNOWN_BUCKET" });

    const version = await attempt(speaking(PROTOCOL_VERSION + 1, new HttpTransport(url, { token: FULL })));
    expect(version).toBeInstanceOf(ProtocolError);
    expect(version).not.toBeInstanceOf(HubRefusedError);
    expect(version).toMatchObject({ code: "ERR_PROTOCOL_VERSION" });
    expect(version!.message).toMatch(/^the hub refused the handshake: protocol version \d+ is not supported/);

    // The classes do not overlap: an auth refusal is no bucket refusal, and neither is the version's.
    expect(noToken).not.toBeInstanceOf(HubBucketError);
    expect(forbidden).not.toBeInstanceOf(HubAuthError);
    // A refused start changed no data on the hub. Refusals before the token was
    // known leave no client behind; the version refusal, from a known token, is
    // kept as that client's last error for the console.
    expect(h.clients.list().map((c) => [c.nodeId, c.lastError])).toEqual([
      ["a", expect.stringMatching(/^protocol version \d+ is not supported/)],
    ]);

    const down = await attempt(new HttpTransport("http://127.0.0.1:1", { retries: 0 }));
    expect(down).toBeInstanceOf(TransportError);
    expect(await attempt(new HttpTransport(url, { token: FULL }))).toBeNull();
  });
});

/**
 * What only the WebSocket transport and its hub endpoint (GET /v1/ws) do,
 * beyond the conformance suites: a dropped socket fails the calls in flight
 * and the next call opens another (with retries, a call rides over the
 * drop); a subscribed transport reopens its socket, says so and hears
 * notices on the new one; the hub's rate limit answers 429 on a socket that
 * stays open; a frame that is not a request is answered 400 with its id; a
 * plain GET is 426. Against a real hub on loopback.
 */
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildServer } from "../src/daemon/server.js";
import { Auth } from "../src/hub/auth.js";
import type { Hub } from "../src/hub/hub.js";
import { createLogger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HubRefusedError } from "../src/sync/transport.js";
import { WebSocketTransport } from "../src/sync/transports/websocket.js";
import { useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems, rows } from "./sync-helpers.js";

const TOKEN = "websocket-token-00001";
const tempDir = useTempDirs("tidewire-ws-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function serve(options: { rateLimitPerSecond?: number } = {}) {
  const dir = tempDir();
  const hub: Hub = hubOn(dir);
  cleanup.push(() => hub.replica.close());
  const app = buildServer({
    store: hub.replica.store,
    queue: new Queue(hub.replica.store),
    logger: createLogger({ level: "silent" }),
    hub: { hub, auth: Auth.token(TOKEN), rateLimitPerSecond: options.rateLimitPerSecond },
  });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  cleanup.push(() => app.close());
  const a = openItems(dir, "a");
  cleanup.push(() => a.close());
  return { hub, app, url, a };
}

describe("WebSocketTransport and GET /v1/ws", () => {
  it("fails the calls in flight when the socket drops, and the next call opens another", async () => {
    const { app, url, a, hub } = await serve();
    // Every connection the hub holds, to close from the hub's side.
    const sockets = new Set<Socket>();
    app.server.on("connection", (s: Socket) => sockets.add(s));
    const dropAll = () => {
      for (const s of sockets) s.destroy();
    };
    const t = new WebSocketTransport(url, { token: TOKEN, retries: 0 });
    cleanup.push(() => t.close());
    const hello = { nodeId: "a", protocolVersion: 1, buckets: ["default"] };
    expect(await t.handshake(hello)).toMatchObject({ accepted: true, hubNodeId: "hub" });
    // The hub holds the next answer back: the call is in flight when the socket goes.
    const handshake = hub.handshake.bind(hub);
    let held = false;
    hub.handshake = (body, scope) => {
      held = true;
      dropAll();
      return handshake(body, scope);
    };
    const lost = await t.handshake(hello).catch((e: unknown) => e);
    expect(held).toBe(true);
    expect(lost).toMatchObject({ name: "TransportError", code: "ERR_CONNECTION_CLOSED" });
    hub.handshake = handshake;
    expect(await t.handshake(hello)).toMatchObject({ accepted: true });
    // With retries the same drop is not seen: the call is sent again on a new socket.
    const again = new WebSocketTransport(url, { token: TOKEN, retries: 2, retryDelayMs: 10 });
    cleanup.push(() => again.close());
    let drops = 0;
    hub.handshake = (body, scope) => {
      if (drops++ === 0) dropAll();
      return handshake(body, scope);
    };
    expect(await again.handshake(hello)).toMatchObject({ accepted: true });
    expect(drops).toBe(2);
    hub.handshake = handshake;
    // A manager over it syncs on.
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const m = new SyncManager(a, again);
    cleanup.push(() => m.stop());
    expect(await m.syncOnce()).toMatchObject({ pushed: 1 });
    expect(rows(hub.replica)).toEqual(rows(a));
  });

  it("answers calls over the token's rate limit with 429 on a socket that stays open", async () => {
    const { url } = await serve({ rateLimitPerSecond: 3 });
    const t = new WebSocketTransport(url, { token: TOKEN, retries: 0 });
    cleanup.push(() => t.close());
    const hello = { nodeId: "a", protocolVersion: 1, buckets: ["default"] };
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => t.handshake(hello).catch((e: unknown) => e)),
    );
    const refused = answers.filter((x) => x instanceof HubRefusedError);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]).toMatchObject({ status: 429, code: "ERR_RATE_LIMITED", permanent: false });
    const start = Date.now();
    await waitFor(() => Date.now() - start > 1_100, "the rate window to pass");
    expect(await t.handshake(hello)).toMatchObject({ accepted: true });
  });

  it("answers a frame that is not a request with 400 and its id, and a plain GET with 426", async () => {
    const { url } = await serve();
    const ws = new WebSocket(`${url.replace("http", "ws")}/v1/ws`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    cleanup.push(() => ws.terminate());
    const frames: unknown[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(String(d))));
    await new Promise((r, j) => ws.once("open", r).once("error", j));
    ws.send(JSON.stringify({ id: 7, type: "fetch", body: {} }));
    ws.send("not json");
    ws.send(JSON.stringify({ id: 8, type: "pull", body: { nodeId: "a" } }));
    await waitFor(() => frames.length === 3, "three answers");
    expect(frames).toContainEqual({
      id: 7,
      error: expect.objectContaining({ status: 400, code: "ERR_MALFORMED" }),
    });
    expect(frames).toContainEqual({
      id: null,
      error: expect.objectContaining({ status: 400, code: "ERR_MALFORMED_JSON" }),
    });
    expect(frames).toContainEqual({
      id: 8,
      error: expect.objectContaining({ status: 400, code: "ERR_MALFORMED" }),
    });
    const res = await fetch(`${url}/v1/ws`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(426);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("ERR_UPGRADE_REQUIRED");
  });

  it("reopens a dropped socket while subscribed, says so, and hears notices on the new one", async () => {
    const { app, url, hub } = await serve();
    const sockets = new Set<Socket>();
    app.server.on("connection", (s: Socket) => sockets.add(s));
    const t = new WebSocketTransport(url, { token: TOKEN, retries: 0 });
    cleanup.push(() => t.close());
    const heard: string[][] = [];
    const unsubscribe = t.subscribe(["default"], (b) => heard.push(b));
    cleanup.push(unsubscribe);
    // On subscribing, and after every reconnection, it reports the buckets: a notice may have been missed.
    await waitFor(() => heard.length === 1, "the subscription's first report");
    for (const s of sockets) s.destroy();
    await waitFor(() => heard.length === 2, "the report after the reconnection");
    const b = openItems(tempDir(), "b");
    cleanup.push(() => b.close());
    b.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    hub.push(
      { nodeId: "b", changes: b.changesSince(0).changes, cursor: "1" },
      { id: "t", buckets: "*", write: true },
    );
    await waitFor(() => heard.length === 3, "the notice of b's push");
    expect(heard).toEqual([["default"], ["default"], ["default"]]);
  });
});

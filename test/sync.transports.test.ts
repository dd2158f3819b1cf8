/**
 * The transport conformance suite (test/conformance/transport.ts) over every
 * Transport: MemoryTransport, HttpTransport to a real hub on loopback (its
 * live notices ride a WebSocket) and WebSocketTransport to the same hub
 * (everything on one socket). The convergence suite
 * (test/conformance/link.ts) runs over a SyncManager on each of them and over
 * the Redis mesh (MeshMember; skipped with a message when Redis is
 * unreachable). One line per backend.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { buildServer } from "../src/daemon/server.js";
import { Auth } from "../src/hub/auth.js";
import type { Hub } from "../src/hub/hub.js";
import { createLogger } from "../src/log.js";
import { MeshMember } from "../src/mesh/mesh-member.js";
import { Queue } from "../src/queue/queue.js";
import type { Replica } from "../src/replica/replica.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { WebSocketTransport } from "../src/sync/transports/websocket.js";
import { forgetCursors, type JoinOptions, linkSuite, type SyncLink } from "./conformance/link.js";
import { type TransportBackend, transportLink, transportSuite } from "./conformance/transport.js";
import { waitFor } from "./helpers.js";
import { REDIS_UNFLUSHED_URL, redisReachable } from "./redis-helpers.js";

const TOKEN = "conformance-token-0001";

const memory: TransportBackend = {
  name: "MemoryTransport",
  live: true,
  wire: false,
  connect: async (hub, defer) => {
    const [t] = MemoryTransport.pair(hub);
    defer(() => t.close());
    return t;
  },
};

/** One server per hub, however many clients a test connects; its URL. */
const servers = new WeakMap<Hub, Promise<string>>();
function serve(hub: Hub, defer: (close: () => unknown) => void): Promise<string> {
  let url = servers.get(hub);
  if (!url) {
    const app = buildServer({
      store: hub.replica.store,
      queue: new Queue(hub.replica.store),
      logger: createLogger({ level: "silent" }),
      hub: { hub, auth: Auth.token(TOKEN) },
    });
    url = app.listen({ host: "127.0.0.1", port: 0 });
    servers.set(hub, url);
    defer(() => app.close());
  }
  return url;
}

const http: TransportBackend = {
  name: "HttpTransport (loopback hub)",
  live: true,
  wire: true,
  connect: async (hub, defer, token = TOKEN) => {
    const t = new HttpTransport(await serve(hub, defer), { token, retries: 0 });
    defer(() => t.close());
    return t;
  },
};

const websocket: TransportBackend = {
  name: "WebSocketTransport (loopback hub)",
  live: true,
  wire: true,
  connect: async (hub, defer, token = TOKEN) => {
    const t = new WebSocketTransport(await serve(hub, defer), { token, retries: 0 });
    defer(() => t.close());
    return t;
  },
};

/** The Redis mesh: replicas with no hub, each a MeshMember on the tests' unflushed Redis database. */
const mesh: SyncLink = {
  name: "MeshMember (Redis Streams)",
  available: redisReachable,
  async network(_dir, _open, defer) {
    const prefix = `twlink-${randomBytes(4).toString("hex")}`;
    const members = new Map<Replica, { member: MeshMember; options: JoinOptions }>();
    defer(async () => {
      const redis = new Redis(REDIS_UNFLUSHED_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    });
    const join = async (r: Replica, options: JoinOptions = {}) => {
      const member = new MeshMember(r, {
        redis: REDIS_UNFLUSHED_URL,
        prefix,
        heartbeatMs: 50,
        blockMs: 200,
        ...options,
      });
      await member.start();
      defer(() => member.stop());
      members.set(r, { member, options });
    };
    /** Every member published all it has, and every reader holds every peer's stream up to its end. */
    const caughtUp = () => {
      const all = [...members.values()].map((m) => m.member);
      for (const t of all) {
        if (!t.status.published.every((p) => p.idle)) return false;
        for (const peer of all) {
          if (peer === t) continue;
          for (const p of peer.status.published) {
            if (!t.buckets.includes(p.bucket) || p.cursor === "0") continue;
            const tail = t.status.peers.find((x) => x.nodeId === peer.nodeId && x.bucket === p.bucket);
            if (!tail || tail.gap || BigInt(tail.cursor) < BigInt(p.cursor)) return false;
          }
        }
      }
      return true;
    };
    return {
      join,
      settle: (done, what) =>
        waitFor(() => caughtUp() && done(), what, { timeoutMs: 60_000, intervalMs: 20 }),
      async rejoin(r) {
        const { member, options } = members.get(r)!;
        await member.stop();
        forgetCursors(r);
        await join(r, options);
      },
    };
  },
};

const transports = [memory, http, websocket];
for (const backend of transports) transportSuite(backend);
for (const link of [...transports.map(transportLink), mesh]) linkSuite(link);

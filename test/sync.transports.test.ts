/**
 * The transport conformance suite (test/conformance/transport.ts) over every
 * Transport: MemoryTransport, HttpTransport to a real hub on loopback (its
 * live notices ride a WebSocket) and WebSocketTransport to the same hub
 * (everything on one socket). One line per transport.
 */
import { buildServer } from "../src/daemon/server.js";
import { Auth } from "../src/hub/auth.js";
import type { Hub } from "../src/hub/hub.js";
import { createLogger } from "../src/log.js";
import { Queue } from "../src/queue/queue.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { WebSocketTransport } from "../src/sync/transports/websocket.js";
import { type TransportBackend, transportSuite } from "./conformance/transport.js";

const TOKEN = "conformance-token-0001";

const memory: TransportBackend = {
  name: "MemoryTransport",
  live: true,
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
  connect: async (hub, defer) => {
    const t = new HttpTransport(await serve(hub, defer), { token: TOKEN, retries: 0 });
    defer(() => t.close());
    return t;
  },
};

const websocket: TransportBackend = {
  name: "WebSocketTransport (loopback hub)",
  live: true,
  connect: async (hub, defer) => {
    const t = new WebSocketTransport(await serve(hub, defer), { token: TOKEN, retries: 0 });
    defer(() => t.close());
    return t;
  },
};

for (const backend of [memory, http, websocket]) transportSuite(backend);

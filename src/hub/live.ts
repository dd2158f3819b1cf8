/**
 * Live notification: GET /v1/live upgrades to a WebSocket on which the hub
 * says `{ type: "changes", buckets }` whenever a push changed those buckets,
 * so subscribers pull at once instead of waiting for their next poll.
 *
 * Contract: the upgrade needs the same bearer token as the other endpoints
 * and `?buckets=a,b` naming buckets the hub serves and the token may read;
 * otherwise it is answered 401, 403 or 404 and closed. A notice carries no
 * changes, only the news, so a lost one costs a poll interval, never data.
 * Sockets are closed when the app closes. A plain GET is answered 426.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { WebSocket, WebSocketServer } from "ws";
import type { Auth } from "./auth.js";
import { type Hub, HubError } from "./hub.js";

/** Returns how many sockets are subscribed now (GET /v1/status shows it). */
export function attachLive(app: FastifyInstance, hub: Hub, auth: Auth): () => number {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const subscribers = new Map<WebSocket, Set<string>>();

  const onChanges = (buckets: string[]) => {
    for (const [ws, wanted] of subscribers) {
      const hit = buckets.filter((b) => wanted.has(b));
      if (hit.length && ws.readyState === WebSocket.OPEN)
        ws.send(JSON.stringify({ type: "changes", buckets: hit }));
    }
  };
  hub.on("changes", onChanges);

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://hub");
    if (url.pathname !== "/v1/live") return;
    try {
      const scope = auth.identify(req.headers.authorization);
      if (!scope) throw new HubError(401, "ERR_UNAUTHORIZED", "a valid bearer token is required");
      const buckets = (url.searchParams.get("buckets") ?? "").split(",").filter((b) => b !== "");
      if (buckets.length === 0) throw new HubError(400, "ERR_MALFORMED", "?buckets=a,b is required");
      hub.checkBuckets(buckets, scope, false);
      wss.handleUpgrade(req, socket, head, (ws) => {
        subscribers.set(ws, new Set(buckets));
        ws.on("close", () => subscribers.delete(ws));
        ws.on("error", () => subscribers.delete(ws));
        // Clients only listen; anything they send is ignored.
      });
    } catch (err) {
      const e = err instanceof HubError ? err : new HubError(500, "ERR_INTERNAL", "upgrade failed");
      const body = JSON.stringify({ error: { code: e.code, message: e.message } });
      socket.end(
        `HTTP/1.1 ${e.status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
  };
  app.server.on("upgrade", onUpgrade);

  app.get("/v1/live", async (_request, reply) =>
    reply.code(426).send({
      error: {
        code: "ERR_UPGRADE_REQUIRED",
        message: "GET /v1/live is a WebSocket: send Upgrade: websocket",
      },
    }),
  );

  app.addHook("preClose", async () => {
    hub.off("changes", onChanges);
    app.server.off("upgrade", onUpgrade);
    for (const ws of subscribers.keys()) ws.terminate();
    subscribers.clear();
    wss.close();
  });
  return () => subscribers.size;
}

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
 * Bounded: an address over its failed-auth budget gets 429 whatever token it
 * sends (the same counter as the other endpoints), a token that upgraded
 * more than `perSecond` times this second 429, a token with `perToken`
 * sockets open 429, and past `total` sockets in all every upgrade 503 with
 * Retry-After, each before the WebSocket handshake.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { HubError } from "../errors.js";
import { loadOptional } from "../optional-deps.js";
import { type Auth, unauthorized } from "./auth.js";
import type { Hub } from "./hub.js";
import { RetryLaterError, tooManyFailures, WindowCounter } from "./limits.js";

export interface LiveLimits {
  /** Live sockets open at once, in all. */
  total: number;
  /** Live sockets open at once per token. */
  perToken: number;
  /** Upgrades per token per second (0: no limit): the rate limit's budget. */
  perSecond: number;
  /** Failed auths by address, shared with the other endpoints. */
  failures: WindowCounter;
}

/** Returns how many sockets are subscribed now (GET /v1/status shows it). */
export async function attachLive(
  app: FastifyInstance,
  hub: Hub,
  auth: Auth,
  limits: LiveLimits,
): Promise<() => number> {
  // ws is imported when a hub is served, not when tidewire loads.
  const { WebSocketServer } = await loadOptional("ws", "The hub's live endpoint", () => import("ws"));
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const subscribers = new Map<WebSocket, Set<string>>();
  const perToken = new Map<string, number>();
  const upgrades = new WindowCounter(limits.perSecond, 1_000);

  const onChanges = (buckets: string[]) => {
    for (const [ws, wanted] of subscribers) {
      const hit = buckets.filter((b) => wanted.has(b));
      if (hit.length && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "changes", buckets: hit }));
    }
  };
  hub.on("changes", onChanges);

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://hub");
    if (url.pathname !== "/v1/live") return;
    try {
      const address = `addr:${req.socket.remoteAddress ?? "?"}`;
      const locked = limits.failures.blocked(address);
      if (locked > 0) throw tooManyFailures(locked);
      const scope = auth.identify(req.headers.authorization);
      if (!scope) {
        limits.failures.hit(address);
        throw unauthorized(req.headers.authorization);
      }
      const early = limits.perSecond > 0 ? upgrades.hit(scope.id) : 0;
      if (early > 0)
        throw new RetryLaterError(
          429,
          "ERR_RATE_LIMITED",
          `rate limit of ${limits.perSecond} upgrades per second exceeded; retry later`,
          1,
        );
      const buckets = (url.searchParams.get("buckets") ?? "").split(",").filter((b) => b !== "");
      if (buckets.length === 0) throw new HubError(400, "ERR_MALFORMED", "?buckets=a,b is required");
      hub.checkBuckets(buckets, scope, false);
      const mine = perToken.get(scope.id) ?? 0;
      if (mine >= limits.perToken)
        throw new RetryLaterError(
          429,
          "ERR_TOO_MANY_SOCKETS",
          `this token has ${mine} live sockets open, the most the hub allows per token (--max-live-per-token); close one first`,
          5,
        );
      if (subscribers.size >= limits.total)
        throw new RetryLaterError(
          503,
          "ERR_LIVE_FULL",
          `the hub has ${subscribers.size} live sockets open, the most it allows (--max-live); poll, or retry later`,
          30,
        );
      // ws completes the handshake synchronously here, so the counts are never behind.
      wss.handleUpgrade(req, socket, head, (ws) => {
        subscribers.set(ws, new Set(buckets));
        perToken.set(scope.id, (perToken.get(scope.id) ?? 0) + 1);
        let gone = false;
        const drop = () => {
          if (gone) return;
          gone = true;
          subscribers.delete(ws);
          const left = (perToken.get(scope.id) ?? 1) - 1;
          if (left > 0) perToken.set(scope.id, left);
          else perToken.delete(scope.id);
        };
        ws.on("close", drop);
        ws.on("error", drop);
        // Clients only listen; anything they send is ignored.
      });
    } catch (err) {
      const e = err instanceof HubError ? err : new HubError(500, "ERR_INTERNAL", "upgrade failed");
      const body = JSON.stringify({ error: { code: e.code, message: e.message } });
      const retry = e instanceof RetryLaterError ? `Retry-After: ${e.retryAfterSeconds}\r\n` : "";
      socket.end(
        `HTTP/1.1 ${e.status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`,
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
    perToken.clear();
    wss.close();
  });
  return () => subscribers.size;
}

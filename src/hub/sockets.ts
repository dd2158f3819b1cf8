/**
 * Sockets: the hub's WebSocket endpoints (GET /v1/live, GET /v1/ws) and who
 * may open one.
 *
 * Contract: an upgrade to an endpoint's path needs the same bearer token as
 * the other endpoints, and passes the endpoint's own `admit` check (its
 * query); otherwise it is answered 401, 403, 404 or 400 with the usual
 * `{ error: { code, message } }` body and closed, before the WebSocket
 * handshake. Bounded, across every endpoint: an address over its failed-auth
 * budget gets 429 whatever token it sends (the same counter as the other
 * endpoints), a token that upgraded more than `perSecond` times this second
 * 429, a token with `perToken` sockets open 429, and past `total` sockets in
 * all every upgrade 503 with Retry-After. A plain GET of an endpoint's path
 * is answered 426. Every socket is closed when the app closes.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { HubError } from "../errors.js";
import { loadOptional } from "../optional-deps.js";
import type { Scope } from "../scope.js";
import { type Auth, unauthorized } from "./auth.js";
import { RetryLaterError, tooManyFailures, WindowCounter } from "./limits.js";

export interface SocketLimits {
  /** Sockets open at once, in all. */
  total: number;
  /** Sockets open at once per token. */
  perToken: number;
  /** Upgrades per token per second (0: no limit): the rate limit's budget. */
  perSecond: number;
  /** Failed auths by address, shared with the other endpoints. */
  failures: WindowCounter;
}

export interface SocketEndpoint {
  path: string;
  /** Largest frame a client may send, bytes: a larger one closes its socket with 1009. */
  maxPayload: number;
  /** Throws the HubError that refuses this upgrade, if its query asks what `scope` may not have. */
  admit?(url: URL, scope: Scope): void;
  /** A socket admitted and open. */
  connect(ws: WebSocket, scope: Scope, url: URL): void;
}

export async function attachSockets(
  app: FastifyInstance,
  auth: Auth,
  limits: SocketLimits,
  endpoints: SocketEndpoint[],
): Promise<void> {
  // ws is imported when a hub is served, not when tidewire loads.
  const { WebSocketServer } = await loadOptional("ws", "The hub's WebSocket endpoints", () => import("ws"));
  const servers = new Map(
    endpoints.map((e) => [
      e.path,
      { endpoint: e, wss: new WebSocketServer({ noServer: true, maxPayload: e.maxPayload }) },
    ]),
  );
  const open = new Set<WebSocket>();
  const perToken = new Map<string, number>();
  const upgrades = new WindowCounter(limits.perSecond, 1_000);

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://hub");
    const server = servers.get(url.pathname);
    if (!server) return;
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
      server.endpoint.admit?.(url, scope);
      const mine = perToken.get(scope.id) ?? 0;
      if (mine >= limits.perToken)
        throw new RetryLaterError(
          429,
          "ERR_TOO_MANY_SOCKETS",
          `this token has ${mine} live sockets open, the most the hub allows per token (--max-live-per-token); close one first`,
          5,
        );
      if (open.size >= limits.total)
        throw new RetryLaterError(
          503,
          "ERR_LIVE_FULL",
          `the hub has ${open.size} live sockets open, the most it allows (--max-live); poll, or retry later`,
          30,
        );
      // ws completes the handshake synchronously here, so the counts are never behind.
      server.wss.handleUpgrade(req, socket, head, (ws) => {
        open.add(ws);
        perToken.set(scope.id, (perToken.get(scope.id) ?? 0) + 1);
        let gone = false;
        const drop = () => {
          if (gone) return;
          gone = true;
          open.delete(ws);
          const left = (perToken.get(scope.id) ?? 1) - 1;
          if (left > 0) perToken.set(scope.id, left);
          else perToken.delete(scope.id);
        };
        ws.on("close", drop);
        ws.on("error", drop);
        server.endpoint.connect(ws, scope, url);
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

  for (const path of servers.keys()) {
    app.get(path, async (_request, reply) =>
      reply.code(426).send({
        error: {
          code: "ERR_UPGRADE_REQUIRED",
          message: `GET ${path} is a WebSocket: send Upgrade: websocket`,
        },
      }),
    );
  }

  app.addHook("preClose", async () => {
    app.server.off("upgrade", onUpgrade);
    for (const ws of open) ws.terminate();
    open.clear();
    perToken.clear();
    for (const { wss } of servers.values()) wss.close();
  });
}

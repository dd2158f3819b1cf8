/**
 * The hub's HTTP endpoints on the daemon's fastify app: POST /v1/handshake,
 * POST /v1/pull, POST /v1/push (sync-calls.ts), and the WebSockets GET
 * /v1/live (live.ts) and GET /v1/ws (socket-calls.ts), admitted by sockets.ts.
 *
 * Contract: every /v1 request must carry a bearer token the Auth knows (401
 * otherwise; a path that names no endpoint is a 404 whatever the token; an
 * address that sent too many wrong or missing tokens gets 429 for the rest of
 * the window, whatever it sends), is counted against that token's rate limit
 * (429), and must be
 * JSON within the body limit (400 malformed, 413 too large, 415 not JSON).
 * Every refusal is a 4xx whose body is `{ error: { code, message } }`, the
 * message one clear sentence; the hub's state is untouched by a refused
 * request, and the app stays up. Routes live in their own plugin scope, so
 * /healthz and /metrics keep no auth and no rate limit.
 */
import rateLimit from "@fastify/rate-limit";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HubError } from "../errors.js";
import type { Rollups } from "../history/rollups.js";
import type { Pins } from "../pins/pins.js";
import { pinRoutes } from "../pins/routes.js";
import type { Scope } from "../scope.js";
import { PROTOCOL_VERSION } from "../sync/protocol.js";
import { type Auth, unauthorized } from "./auth.js";
import { withLag } from "./clients.js";
import { conflictRoutes } from "./conflicts-routes.js";
import { historyRoutes } from "./history-routes.js";
import type { Hub } from "./hub.js";
import { jobRoutes } from "./jobs-routes.js";
import { DEFAULT_AUTH_FAILURES_PER_MINUTE, liveCaps, tooManyFailures, WindowCounter } from "./limits.js";
import { LiveNotices, liveEndpoint } from "./live.js";
import { traceRequests } from "./request-spans.js";
import { socketCallsEndpoint } from "./socket-calls.js";
import { attachSockets } from "./sockets.js";
import { StatusReader } from "./status-reader.js";
import { callHub, refusal, SYNC_CALLS } from "./sync-calls.js";
import { WriteGate } from "./write-gate.js";

export interface HubRoutesOptions {
  hub: Hub;
  auth: Auth;
  /** Requests per token (or per address, before a token is known) per second (default 200; 0: no limit). */
  rateLimitPerSecond?: number;
  /** Serve GET/PUT /v1/pins/:hash from these pins (src/pins/routes.ts). */
  pins?: Pins;
  /** Where requests wait, off the event loop, for another program's write lock (default: a gate of its own). */
  gate?: WriteGate;
  /** Live sockets open at once, in all (default 1,000, held under half the open-file limit). */
  maxLive?: number;
  /** Live sockets open at once per token (default 100). */
  maxLivePerToken?: number;
  /**
   * Requests with a wrong or missing token per address per window (default
   * 60); past it every request from that address is 429 until the window
   * ends, the right token included, so a guess cannot be told right by its answer.
   */
  authFailures?: number;
  /** That window, ms (default 60,000). */
  authFailureWindowMs?: number;
  /** Epoch ms the server started (buildServer's, which /healthz reports too). */
  startedAt?: number;
  /** The daemon's history, so GET /v1/history shows the minute not yet flushed (default: the file's rows only). */
  rollups?: Rollups;
}

/** The JSON envelope of a protocol message, beyond its changes. */
const ENVELOPE_BYTES = 64 * 1024;

declare module "fastify" {
  interface FastifyRequest {
    scope?: Scope;
  }
}

export async function hubRoutes(app: FastifyInstance, options: HubRoutesOptions): Promise<void> {
  const { hub, auth } = options;
  const gate = options.gate ?? new WriteGate(hub.replica.store);
  if (!options.gate) app.addHook("onClose", () => gate.close());
  const startedAt = options.startedAt ?? Date.now();
  const perSecond = options.rateLimitPerSecond ?? 200;
  traceRequests(app);
  if (perSecond > 0)
    await app.register(rateLimit, {
      max: perSecond,
      timeWindow: 1000,
      keyGenerator: (req) => auth.identify(req.headers.authorization)?.id ?? `addr:${req.ip}`,
      errorResponseBuilder: (_req, ctx) => ({
        statusCode: ctx.statusCode,
        code: "ERR_RATE_LIMITED",
        message: `rate limit of ${ctx.max} requests per ${ctx.after} exceeded; retry later`,
      }),
    });

  app.setErrorHandler((err: FastifyError | HubError, request, reply) => {
    const r = refusal(err, (e) => request.log.error({ err: e }, "the hub's disk is full"));
    if (r) {
      if (r.retryAfterSeconds !== undefined) reply.header("retry-after", String(r.retryAfterSeconds));
      return send(reply, r.status, r.code, r.message);
    }
    const status = (err as FastifyError).statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const [code, message] = clientError(err as FastifyError);
      return send(reply, status, code, message);
    }
    request.log.error({ err }, "sync request failed");
    return send(reply, 500, "ERR_INTERNAL", "the hub failed to handle the request; see its log");
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, 404, "ERR_NOT_FOUND", `no such endpoint: ${request.method} ${request.url.split("?")[0]}`),
  );

  const failures = new WindowCounter(
    options.authFailures ?? DEFAULT_AUTH_FAILURES_PER_MINUTE,
    options.authFailureWindowMs ?? 60_000,
  );
  app.addHook("onRequest", async (request, reply) => {
    // An unknown path is not a question about the token.
    if (request.is404) return;
    // Before the token is looked at: an address out of tries learns nothing from the answer.
    const locked = failures.blocked(`addr:${request.ip}`);
    if (locked > 0) throw tooManyFailures(locked);
    const scope = auth.identify(request.headers.authorization);
    if (!scope) {
      failures.hit(`addr:${request.ip}`);
      reply.header("www-authenticate", 'Bearer realm="tidewire"');
      throw unauthorized(request.headers.authorization);
    }
    request.scope = scope;
  });

  // Only JSON is a protocol message; fastify would otherwise hand text/plain over as a string.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    "application/json",
    { parseAs: "string" },
    app.getDefaultJsonParser("error", "error"),
  );

  const bodyLimit = hub.limits.maxBytes + ENVELOPE_BYTES;
  for (const call of SYNC_CALLS) {
    app.post(`/v1/${call}`, { bodyLimit }, async (request: FastifyRequest) =>
      callHub(hub, gate, call, request.body, request.scope!),
    );
  }
  const notices = new LiveNotices(hub);
  app.addHook("preClose", async () => notices.close());
  await attachSockets(
    app,
    auth,
    {
      ...liveCaps({ maxLive: options.maxLive, maxLivePerToken: options.maxLivePerToken }),
      perSecond,
      failures,
    },
    [
      liveEndpoint(hub, notices),
      socketCallsEndpoint({ hub, gate, notices, perSecond, maxPayload: bodyLimit, log: app.log }),
    ],
  );
  const liveSubscribers = () => notices.size;
  const statusReader = new StatusReader(hub.replica.store, { readers: () => hub.clients.positions() });
  app.addHook("onClose", () => statusReader.close());
  app.get("/v1/status", async (request) => {
    if (request.scope!.buckets !== "*") {
      throw new HubError(
        403,
        "ERR_FORBIDDEN_STATUS",
        "the status shows every bucket, cursor, peer and queue: it needs a token for every bucket",
      );
    }
    const read = await statusReader.get();
    const { readerLag, ...status } = read.status;
    return {
      ok: true,
      hub: {
        nodeId: hub.nodeId,
        relay: hub.relay,
        protocolVersion: PROTOCOL_VERSION,
        limits: hub.limits,
        startedAt: new Date(startedAt).toISOString(),
        uptimeSeconds: (Date.now() - startedAt) / 1000,
        liveSubscribers: liveSubscribers(),
        // The rest is read at most every few seconds (see status-reader.ts): when, and how long it took.
        statusAt: new Date(read.at).toISOString(),
        statusMs: read.ms,
      },
      clients: hub.clients.list().map((c) => withLag(c, readerLag)),
      ...status,
    };
  });
  await app.register(jobRoutes, { store: hub.replica.store });
  await app.register(conflictRoutes, { hub, gate });
  await app.register(historyRoutes, { store: hub.replica.store, rollups: options.rollups });
  if (options.pins) await app.register(pinRoutes, { pins: options.pins });
}

function send(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } });
}

/** Fastify's own 4xx errors, in the hub's codes and words. */
function clientError(err: FastifyError): [string, string] {
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return ["ERR_BODY_TOO_LARGE", "the request body is larger than the hub accepts"];
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return ["ERR_MEDIA_TYPE", "the request body must be JSON (Content-Type: application/json)"];
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return ["ERR_MALFORMED", "the request needs a JSON body"];
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return ["ERR_MALFORMED_JSON", "the request body is not valid JSON"];
    default:
      return [err.code ?? "ERR_BAD_REQUEST", err.message];
  }
}

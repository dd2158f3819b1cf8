/**
 * The daemon's HTTP face: GET /healthz and GET /metrics, and the hub's /v1
 * sync endpoints and its dashboard when given a hub (src/hub/routes.ts,
 * src/hub/dashboard.ts).
 *
 * Contract: `buildServer` returns a fastify app that is not yet listening, so
 * the daemon and tests alike decide where it listens. /healthz reads the queue
 * and answers 503 when the database cannot be read. /metrics is the registry
 * in metrics.ts, with the queue depth gauge refreshed at each scrape (depth
 * is a property of the file, which other processes write too, so it cannot
 * be kept up to date by counting). Every request carries an id, taken from a
 * well-formed X-Request-Id or made up, echoed back and logged on one line.
 */
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyReply, type FastifyRequest, LogController } from "fastify";
import { dashboardRoutes } from "../hub/dashboard.js";
import { type HubRoutesOptions, hubRoutes } from "../hub/routes.js";
import type { Logger } from "../log.js";
import { queueDepth, registry } from "../metrics.js";
import { JOB_STATES, type JobQueue } from "../queue/types.js";
import type { Store } from "../store.js";

export interface ServerOptions {
  store: Store;
  queue: JobQueue;
  logger: Logger;
  /** Epoch ms the daemon started; /healthz reports uptime from it. */
  startedAt?: number;
  /** The sync endpoints under /v1 (src/hub), when this server is a hub. */
  hub?: HubRoutesOptions;
  /** Serve HTTPS with this certificate chain and private key (PEM); plain HTTP without. */
  tls?: { cert: Buffer; key: Buffer };
  /** How long one request may take to arrive whole, headers included, ms (default 30,000; 0: no limit). */
  requestTimeoutMs?: number;
  /** How long a connection may sit idle between requests, ms (default 5,000). */
  keepAliveTimeoutMs?: number;
}

/**
 * Node's timeouts for a request that trickles in: they must reach the server
 * when it is made (set later, Node 20 never cut a stalled body), headers are
 * bounded even with no request limit, and the stalled connections are looked
 * for every tenth of the limit (Node's default, 30 s, stretched a 30 s limit
 * to 60-90 s).
 */
function httpTimeouts(requestTimeout: number) {
  const headersTimeout = requestTimeout > 0 ? requestTimeout : 60_000;
  return {
    requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(headersTimeout / 10))),
  };
}

/** An id a caller sent is reused only if it cannot garble a log line. */
const CALLER_REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Fastify logs two lines per request by default; one, written at completion, tells the whole story. */
class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply) {
    const line = {
      method: request.method,
      url: request.url,
      statusCode: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
    };
    if (error) reply.log.error({ ...line, err: error }, "request failed");
    else reply.log.info(line, "request");
  }
}

export function buildServer(options: ServerOptions) {
  const { store, queue, logger } = options;
  const startedAt = options.startedAt ?? Date.now();
  const timeouts = httpTimeouts(options.requestTimeoutMs ?? 30_000);
  // Typed as the plain-HTTP instance whichever it is: routes and hooks are the same on both.
  const app = Fastify({
    ...(options.tls ? { https: { ...options.tls, ...timeouts } } : { http: timeouts }),
    loggerInstance: logger,
    logController: new OneLinePerRequest(),
    requestIdHeader: false,
    // A client that stalls mid-request must not hold a connection for ever.
    requestTimeout: timeouts.requestTimeout,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 5_000,
    genReqId: (req) => {
      const sent = req.headers["x-request-id"];
      return typeof sent === "string" && CALLER_REQUEST_ID.test(sent) ? sent : randomUUID();
    },
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  app.get("/healthz", async (_request, reply) => {
    const about = { db: store.path, queue: queue.name, uptimeSeconds: (Date.now() - startedAt) / 1000 };
    try {
      return { ok: true, ...about, stats: queue.stats() };
    } catch (err) {
      reply.code(503);
      return { ok: false, ...about, error: `cannot read the database: ${(err as Error).message}` };
    }
  });

  app.get("/metrics", async (request, reply) => {
    try {
      const stats = queue.stats();
      for (const state of JOB_STATES) queueDepth.labels(queue.name, state).set(stats[state]);
    } catch (err) {
      // The other metrics are still worth serving; /healthz reports the database.
      request.log.warn({ err }, "queue depth not refreshed: cannot read the database");
    }
    reply.type(registry.contentType);
    return registry.metrics();
  });

  if (options.hub) {
    app.register(hubRoutes, { ...options.hub, startedAt });
    app.register(dashboardRoutes);
  }

  return app;
}

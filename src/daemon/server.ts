/**
 * The daemon's HTTP face: GET /healthz and GET /metrics, and the hub's /v1
 * sync endpoints and its dashboard when given a hub (src/hub/routes.ts,
 * src/hub/dashboard.ts).
 *
 * Contract: `buildServer` returns a fastify app that is not yet listening, so
 * the daemon and tests alike decide where it listens. /healthz reads the queue
 * and answers 503 when the database cannot be read; it never waits for a
 * write lock, and says whether the file can be written now. /readyz answers
 * 503 while the file cannot be written, or another program has held its
 * write lock for longer than a request waits for it (the WriteGate's
 * `waitMs`). /metrics (behind `metricsToken` when given) is the registry
 * in metrics.ts, with the queue depth gauge refreshed at each scrape (depth
 * is a property of the file, which other processes write too, so it cannot
 * be kept up to date by counting). Every request carries an id, taken from a
 * well-formed X-Request-Id or made up, echoed back and logged on one line.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyReply, type FastifyRequest, LogController } from "fastify";
import { dashboardRoutes } from "../hub/dashboard.js";
import { type HubRoutesOptions, hubRoutes } from "../hub/routes.js";
import { WriteGate } from "../hub/write-gate.js";
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
  /** Watches the database's write lock for /readyz and the hub's requests (default: one of its own). */
  gate?: WriteGate;
  /** GET /metrics needs `Authorization: Bearer <this>` (default: public). */
  metricsToken?: string;
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

  const gate = options.gate ?? new WriteGate(store);
  if (!options.gate) app.addHook("onClose", () => gate.close());
  const writeState = () => {
    const s = gate.state();
    const lockedMs = s.lockedSince === null ? 0 : Date.now() - s.lockedSince;
    return { writable: s.writable, lockedMs, ...(s.error ? { writeError: s.error } : {}) };
  };

  app.get("/healthz", async (_request, reply) => {
    const about = { db: store.path, queue: queue.name, uptimeSeconds: (Date.now() - startedAt) / 1000 };
    try {
      // Reads never wait for a write lock in WAL mode; the write state is a look, not a wait.
      return { ok: true, ...about, ...writeState(), stats: queue.stats() };
    } catch (err) {
      reply.code(503);
      return { ok: false, ...about, error: `cannot read the database: ${(err as Error).message}` };
    }
  });

  app.get("/readyz", async (_request, reply) => {
    const w = writeState();
    const ready = w.writeError === undefined && w.lockedMs < gate.waitMs;
    if (!ready) {
      reply.code(503).header("retry-after", "1");
      const why = w.writeError
        ? `the database cannot be written: ${w.writeError}`
        : `another program has held the database's write lock for ${w.lockedMs} ms`;
      return { ok: false, ...w, error: why };
    }
    return { ok: true, ...w };
  });

  const metricsAuth = options.metricsToken === undefined ? null : bearer(options.metricsToken);
  app.get("/metrics", async (request, reply) => {
    if (metricsAuth && !metricsAuth(request.headers.authorization)) {
      reply.code(401).header("www-authenticate", 'Bearer realm="tidewire-metrics"');
      return {
        error: {
          code: "ERR_UNAUTHORIZED",
          message: "GET /metrics needs the metrics token (Authorization: Bearer <token>)",
        },
      };
    }
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
    app.register(hubRoutes, { gate, ...options.hub, startedAt });
    app.register(dashboardRoutes);
  }

  return app;
}

/** A constant-time check of `Authorization: Bearer <token>` against one token. */
function bearer(token: string): (header: string | undefined) => boolean {
  const want = createHash("sha256").update(`Bearer ${token}`).digest();
  return (header) =>
    timingSafeEqual(
      createHash("sha256")
        .update(header ?? "")
        .digest(),
      want,
    );
}

/**
 * The operations console's job endpoints, registered inside the hub's /v1
 * scope (so its token check, rate limit and error envelope apply):
 *
 *   GET  /v1/jobs?queue=&state=&type=&q=&limit=&offset=&sort=&order=  → { queue, queues, jobs, total }
 *   GET  /v1/jobs/:id?queue=                                          → { job }
 *   GET  /v1/periodic?queue=                                          → { queue, schedules } (with next run)
 *   POST /v1/jobs/:id/{retry|cancel|run|priority|delete} {queue, priority?} → { ok, action, id, changed, job }
 *   POST /v1/jobs/bulk {queue, action, filter, expect, priority?}      → { ok, action, matched, changed }
 *   POST /v1/periodic/:name/{pause|resume} {queue}                     → { ok, action, name, changed, schedule }
 *
 * Contract: reads need any valid token. Writes need an admin token and the
 * same origin, checked before anything is read (console-write.ts). A bulk action must send back the count
 * it was shown (`expect`); if the matching jobs moved since, 409
 * ERR_COUNT_CHANGED and nothing changes. A single action the job's state does
 * not allow is a 409 ERR_JOB_STATE naming the state. Pausing a paused
 * schedule (or resuming an active one) answers `changed: false`; an unknown
 * one is a 404 ERR_NO_SCHEDULE. Every write is logged
 * (token name, action, target, result) and counted
 * (tidewire_console_actions_total). All queue access goes through the Queue.
 */
import type { FastifyInstance } from "fastify";
import { HubError, InvalidArgumentError } from "../errors.js";
import { consoleActions } from "../metrics.js";
import { CountChangedError, queueNames } from "../queue/admin.js";
import { Queue } from "../queue/queue.js";
import { JOB_ACTIONS, type JobAction, type JobFilter, type JobState, type SortBy } from "../queue/types.js";
import type { Store } from "../store.js";
import { wholeNumber as int, writeBody } from "./console-write.js";

const SORTS: Record<string, SortBy> = { created: "created", priority: "priority", runAt: "runAt" };
/** Queues kept open (prepared statements) by name; beyond this, one is made per request. */
const QUEUE_CACHE = 32;
/** Jobs per GET /v1/jobs page: a page is read and sent whole. */
const MAX_PAGE = 500;

export async function jobRoutes(app: FastifyInstance, options: { store: Store }): Promise<void> {
  const { store } = options;
  const cache = new Map<string, Queue>();
  const queueOf = (name: unknown): Queue =>
    guard(() => {
      const n = name === undefined || name === "" ? "default" : name;
      if (typeof n !== "string") throw new InvalidArgumentError("queue", "must be a string");
      let q = cache.get(n);
      if (!q) {
        q = new Queue(store, n);
        if (cache.size < QUEUE_CACHE) cache.set(n, q);
      }
      return q;
    });

  app.get("/v1/jobs", async (request) => {
    const p = request.query as Record<string, string | undefined>;
    const queue = queueOf(p.queue);
    if ((int("limit", p.limit) ?? 0) > MAX_PAGE)
      throw new HubError(400, "ERR_INVALID_ARGUMENT", `limit: at most ${MAX_PAGE} jobs a page`);
    const page = guard(() =>
      queue.search({
        state: (p.state || undefined) as JobState | undefined,
        type: p.type || undefined,
        q: p.q || undefined,
        limit: int("limit", p.limit),
        offset: int("offset", p.offset),
        sortBy: p.sort === undefined ? undefined : (SORTS[p.sort] ?? (p.sort as SortBy)),
        order: (p.order || undefined) as "asc" | "desc" | undefined,
      }),
    );
    return { queue: queue.name, queues: queueNames(store), ...page };
  });

  app.get("/v1/periodic", async (request) => {
    const queue = queueOf((request.query as { queue?: string }).queue);
    return { queue: queue.name, schedules: queue.listPeriodic() };
  });

  app.post("/v1/periodic/:name/:action", async (request) => {
    const { name, action } = request.params as { name: string; action: string };
    const body = writeBody(request, `the schedule action ${JSON.stringify(action)}`);
    if (action !== "pause" && action !== "resume")
      throw new HubError(
        404,
        "ERR_NOT_FOUND",
        `no schedule action ${JSON.stringify(action)}; pause or resume`,
      );
    const queue = queueOf(body.queue);
    const changed = guard(() =>
      action === "pause" ? queue.pausePeriodic(name) : queue.resumePeriodic(name),
    );
    const schedule = queue.listPeriodic().find((p) => p.name === name);
    consoleActions
      .labels(action, "schedule", schedule ? (changed ? "changed" : "unchanged") : "refused")
      .inc();
    request.log.info(
      { token: request.scope!.id, action, queue: queue.name, schedule: name, changed },
      "console schedule action",
    );
    if (!schedule)
      throw new HubError(
        404,
        "ERR_NO_SCHEDULE",
        `no periodic schedule ${JSON.stringify(name)} in queue ${queue.name}`,
      );
    return { ok: true, action, queue: queue.name, name, changed, schedule };
  });

  app.get("/v1/jobs/:id", async (request) => {
    const id = int("id", (request.params as { id: string }).id);
    const queue = queueOf((request.query as { queue?: string }).queue);
    const job = guard(() => queue.get(id ?? 0));
    if (!job) throw new HubError(404, "ERR_NO_JOB", `no job ${id} in queue ${queue.name}`);
    return { job };
  });

  app.post("/v1/jobs/bulk", async (request) => {
    const body = writeBody(request, "a bulk job action");
    const action = actionOf(body.action);
    const queue = queueOf(body.queue);
    const filter = (body.filter ?? {}) as JobFilter;
    if (typeof body.expect !== "number") {
      count(action, "bulk", "refused");
      throw new HubError(
        400,
        "ERR_EXPECT_REQUIRED",
        "a bulk action needs `expect`: the count of matching jobs you were shown",
      );
    }
    try {
      const changed = guard(() =>
        queue.bulk(action, filter, {
          expect: body.expect as number,
          priority: body.priority as number | undefined,
        }),
      );
      count(action, "bulk", changed > 0 ? "changed" : "unchanged");
      request.log.info(
        { token: request.scope!.id, action, queue: queue.name, filter, changed },
        "console bulk action",
      );
      return { ok: true, action, queue: queue.name, matched: body.expect, changed };
    } catch (err) {
      count(action, "bulk", "refused");
      request.log.info(
        { token: request.scope!.id, action, queue: queue.name, filter, err },
        "console bulk action refused",
      );
      throw err;
    }
  });

  app.post("/v1/jobs/:id/:action", async (request) => {
    const params = request.params as { id: string; action: string };
    const body = writeBody(request, `the job action ${JSON.stringify(params.action)}`);
    const action = actionOf(params.action);
    const id = int("id", params.id) ?? 0;
    const queue = queueOf(body.queue);
    const before = guard(() => queue.get(id));
    if (!before) {
      count(action, "one", "refused");
      throw new HubError(404, "ERR_NO_JOB", `no job ${id} in queue ${queue.name}`);
    }
    const changed = guard(() => queue.act(action, id, { priority: body.priority as number | undefined }));
    count(action, "one", changed ? "changed" : "refused");
    request.log.info(
      { token: request.scope!.id, action, queue: queue.name, id, changed },
      "console job action",
    );
    if (!changed)
      throw new HubError(409, "ERR_JOB_STATE", `job ${id} is ${before.state}; ${REFUSAL[action]}`);
    return { ok: true, action, id, changed, job: queue.get(id) ?? null };
  });
}

const REFUSAL: Record<JobAction, string> = {
  retry: "only failed or cancelled jobs can be retried (or another job holds its key)",
  cancel: "only pending or running jobs can be cancelled",
  run: "only a pending job due later can be run now",
  priority: "only a pending job's priority can change",
  delete: "a running job cannot be deleted; cancel it first",
};

function actionOf(value: unknown): JobAction {
  if (!JOB_ACTIONS.includes(value as JobAction))
    throw new HubError(
      404,
      "ERR_NOT_FOUND",
      `no job action ${JSON.stringify(value)}; one of ${JOB_ACTIONS.join(", ")}`,
    );
  return value as JobAction;
}

function count(action: JobAction, target: "one" | "bulk", result: "changed" | "unchanged" | "refused") {
  consoleActions.labels(action, target, result).inc();
}

/** The queue's own refusals, as the client's fault. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CountChangedError) throw new HubError(409, err.code, err.message);
    if (err instanceof InvalidArgumentError) throw new HubError(400, err.code, err.message);
    throw err;
  }
}

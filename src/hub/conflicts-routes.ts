/**
 * The operations console's conflict endpoints, registered inside the hub's
 * /v1 scope (so its token check, rate limit and error envelope apply):
 *
 *   GET  /v1/conflicts?kind=&table=&limit=&offset=  → { items, total, counts, tables }
 *   GET  /v1/conflicts/:id                          → { item, quarantined }
 *   POST /v1/conflicts/:id/restore {replace?}       → { ok, action, id, restored, item }
 *   POST /v1/conflicts/:id/retry {}                 → { ok, action, id, restored } (the change left the quarantine)
 *   POST /v1/conflicts/retry {}                     → { ok, action, applied, left }
 *
 * Contract: reads need a token for every bucket, as GET /v1/status does: a
 * conflict holds both versions of a row of any table. `kind` is one kind
 * (unique, insert, orphan, held, failed) or a group (conflict, quarantined).
 * Writes need an admin token and the same origin (console-write.ts) and run
 * the replica's own code, through the write gate: restore is
 * `Replica.restoreConflict` — what `tidewire conflicts restore [--replace]`
 * runs — for a conflict; retry is the same call for a quarantined change, and
 * `retryQuarantined` for all of them. A restore the schema refuses is a 409
 * ERR_RESTORE_REFUSED that wrote nothing; a retried change that still cannot
 * be applied is a 409 ERR_STILL_QUARANTINED with its reason (it is kept
 * again, under a new id); restoring a quarantined change or retrying a
 * conflict is a 409 ERR_CONFLICT_KIND. What a write put in the log is told to
 * live subscribers at once. Every write is logged (token name, action, id,
 * result) and counted (tidewire_console_actions_total).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HubError, InvalidArgumentError } from "../errors.js";
import { consoleActions } from "../metrics.js";
import {
  CONFLICT_KINDS,
  type ConflictKind,
  isQuarantine,
  QUARANTINE_KINDS,
  type QuarantineKind,
} from "../replica/conflicts.js";
import { InvalidChangeError } from "../replica/incoming.js";
import { RestoreRefusedError } from "../replica/restore.js";
import { wholeNumber, writeBody } from "./console-write.js";
import type { Hub } from "./hub.js";
import type { WriteGate } from "./write-gate.js";

/** Items per GET /v1/conflicts page: each carries up to two versions of a row. */
const MAX_PAGE = 200;
const DEFAULT_PAGE = 50;

type Kind = ConflictKind | QuarantineKind;
const KINDS: Record<string, Kind[]> = {
  conflict: [...CONFLICT_KINDS],
  quarantined: [...QUARANTINE_KINDS],
  ...Object.fromEntries([...CONFLICT_KINDS, ...QUARANTINE_KINDS].map((k) => [k, [k]])),
};

type Action = "restore" | "retry";
type Target = "conflict" | "quarantined" | "all";

export async function conflictRoutes(app: FastifyInstance, options: { hub: Hub; gate: WriteGate }) {
  const { hub, gate } = options;
  const replica = hub.replica;
  // Reads and writes alike go through the Replica, which owns tw_conflicts.
  const conflicts = replica.conflictLog;

  app.get("/v1/conflicts", async (request) => {
    everyBucket(request);
    const p = request.query as Record<string, string | undefined>;
    const kinds = p.kind ? KINDS[p.kind] : undefined;
    if (p.kind && !kinds)
      throw new HubError(
        400,
        "ERR_INVALID_ARGUMENT",
        `kind: must be one of ${Object.keys(KINDS).join(", ")}, got ${JSON.stringify(p.kind)}`,
      );
    const limit = wholeNumber("limit", p.limit) ?? DEFAULT_PAGE;
    if (limit < 1 || limit > MAX_PAGE)
      throw new HubError(400, "ERR_INVALID_ARGUMENT", `limit: from 1 to ${MAX_PAGE} items a page`);
    const offset = wholeNumber("offset", p.offset) ?? 0;
    const filter = { kinds, table: p.table || undefined };
    return guard(() => {
      const page = conflicts.list({ ...filter, limit, offset });
      return {
        // One statement read them in id order; list() hands them back by type.
        items: [...page.conflicts, ...page.quarantined].sort((a, b) => b.id - a.id),
        total: conflicts.total(filter),
        counts: conflicts.counts(),
        tables: conflicts.tables(),
      };
    });
  });

  app.get("/v1/conflicts/:id", async (request) => {
    everyBucket(request);
    const id = idOf(request);
    const item = conflicts.get(id);
    if (!item) throw noConflict(id);
    return { item, quarantined: isQuarantine(item.kind) };
  });

  app.post("/v1/conflicts/retry", async (request) => {
    const log = (result: string, extra: object) =>
      request.log.info(
        { token: request.scope!.id, action: "retry", result, ...extra },
        "console conflict action",
      );
    let applied: number;
    try {
      writeBody(request, "retrying quarantined changes");
      applied = await gate.run(() => {
        const n = replica.retryQuarantined();
        if (n > 0) announce(hub);
        return n;
      });
    } catch (err) {
      count("retry", "all", "refused");
      log("refused", { err: (err as Error).message });
      throw err;
    }
    const c = conflicts.counts();
    count("retry", "all", applied > 0 ? "changed" : "unchanged");
    log(applied > 0 ? "changed" : "unchanged", { applied });
    return { ok: true, action: "retry", applied, left: c.held + c.failed };
  });

  app.post("/v1/conflicts/:id/:action", async (request) => {
    const params = request.params as { action: string };
    const action = params.action;
    if (action !== "restore" && action !== "retry")
      throw new HubError(
        404,
        "ERR_NOT_FOUND",
        `no conflict action ${JSON.stringify(action)}; one of restore, retry`,
      );
    // Counted and logged from here on, refusals of the token or the origin included.
    let target: Target = "conflict";
    let id: number | undefined;
    let replace = false;
    const log = (result: string, extra: object = {}) =>
      request.log.info(
        { token: request.scope!.id, action, id, replace, result, ...extra },
        "console conflict action",
      );
    try {
      id = idOf(request);
      const body = writeBody(request, `${action === "restore" ? "restoring" : "retrying"} conflict ${id}`);
      if (body.replace !== undefined && typeof body.replace !== "boolean")
        throw new HubError(400, "ERR_INVALID_ARGUMENT", "replace: must be true or false");
      replace = body.replace === true;
      const before = conflicts.get(id);
      if (before && isQuarantine(before.kind)) target = "quarantined";
      if (!before) throw noConflict(id);
      if ((action === "retry") !== (target === "quarantined"))
        throw new HubError(
          409,
          "ERR_CONFLICT_KIND",
          action === "retry"
            ? `conflict ${id} is a ${before.kind} conflict, not a quarantined change: restore it instead`
            : `conflict ${id} is a quarantined change (${before.kind}): retry it instead`,
        );
      const result = await gate.run(() => {
        const r = guard(() => replica.restoreConflict(id as number, { replace }));
        if (r.restored) announce(hub, before.table);
        return r;
      });
      if (!result.restored)
        throw new HubError(
          409,
          "ERR_STILL_QUARANTINED",
          `change ${id} still cannot be applied: ${result.reason}; it is kept in quarantine again`,
        );
      count(action, target, "changed");
      log("changed");
      // A retried change that applied is gone from the quarantine: no item to show.
      if (action === "retry") return { ok: true, action, id, restored: true };
      return { ok: true, action, id, restored: true, item: conflicts.get(id) };
    } catch (err) {
      count(action as Action, target, "refused");
      log("refused", { err: (err as Error).message });
      throw err;
    }
  });
}

/** The write went into the log (ingested now, not at the next tick): live subscribers pull it at once. */
function announce(hub: Hub, table?: string): void {
  hub.replica.ingest();
  const buckets = new Set(
    hub.replica
      .tables()
      .filter((t) => table === undefined || t.table === table)
      .map((t) => t.bucket),
  );
  if (buckets.size > 0) hub.emit("changes", [...buckets]);
}

function everyBucket(request: FastifyRequest): void {
  if (request.scope!.buckets !== "*")
    throw new HubError(
      403,
      "ERR_FORBIDDEN_CONFLICTS",
      "conflicts hold rows of every bucket's tables: reading them needs a token for every bucket",
    );
}

function idOf(request: FastifyRequest): number {
  const id = wholeNumber("id", (request.params as { id: string }).id) ?? 0;
  if (id < 1) throw new HubError(400, "ERR_INVALID_ARGUMENT", "id: must be a conflict id (1 or more)");
  return id;
}

function noConflict(id: number): HubError {
  return new HubError(404, "ERR_NO_CONFLICT", `there is no conflict ${id}`);
}

function count(action: Action, target: Target, result: "changed" | "unchanged" | "refused") {
  consoleActions.labels(action, target, result).inc();
}

/** The replica's refusals, as the client's fault. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    // A kept change the checks now refuse (a schema that moved under it): nothing was written.
    if (err instanceof RestoreRefusedError || err instanceof InvalidChangeError)
      throw new HubError(409, err.code, err.message);
    if (err instanceof InvalidArgumentError) throw new HubError(400, err.code, err.message);
    throw err;
  }
}

/**
 * The queue's own arguments, shared by Queue and MemoryQueue: job options,
 * states, list/filter/update/bulk options, each normalized to what the store
 * needs. Every public call validates all of its input before it writes
 * anything, and names the bad argument; the general checks (names, counts,
 * durations) are src/validate.ts's.
 */
import { InvalidArgumentError } from "../errors.js";
import { encodePayload } from "../json-payload.js";
import { activeTraceparent } from "../trace.js";
import { checkDuration, checkInteger, checkName, checkOneOf, checkTime, checkTimeout } from "../validate.js";
import { validateBackoff } from "./backoff.js";
import {
  type AddOptions,
  type BulkOptions,
  type CleanupOptions,
  FINISHED_STATES,
  JOB_ACTIONS,
  JOB_STATES,
  type Job,
  type JobFilter,
  type JobState,
  type JobUpdate,
  type ListOptions,
  type SortBy,
  type StuckOptions,
} from "./types.js";

export const DEFAULT_MAX_ATTEMPTS = 3;
const SORTS: readonly SortBy[] = ["created", "priority", "runAt"];

export interface NormalizedAdd {
  type: string;
  /** The payload's JSON text, as stored. */
  payload: string;
  /** The payload as given (what the returned Job carries, sparing a parse). */
  value: unknown;
  priority: number;
  runAt: number;
  maxAttempts: number;
  backoff: string | null;
  key: string | null;
  timeoutMs: number | null;
  /** The adder's W3C traceparent (src/trace.ts), null when tracing is off or no span is active. */
  trace: string | null;
}

export function checkState(argument: string, value: unknown): JobState {
  if (!JOB_STATES.includes(value as JobState)) {
    throw new InvalidArgumentError(
      argument,
      `unknown state ${JSON.stringify(value)}; one of ${JOB_STATES.join(", ")}`,
    );
  }
  return value as JobState;
}

export function checkId(value: unknown): number {
  return checkInteger("id", value, 1);
}

export function normalizeAdd(
  type: unknown,
  payload: unknown,
  options: AddOptions | undefined,
  now: number,
  argPrefix = "",
): NormalizedAdd {
  const o = options ?? {};
  if (typeof o !== "object") throw new InvalidArgumentError(`${argPrefix}options`, "must be an object");
  const name = checkName(`${argPrefix}type`, type);
  const [text, value] = encodePayload(`${argPrefix}payload`, payload);
  const priority =
    o.priority === undefined ? 0 : checkInteger(`${argPrefix}priority`, o.priority, -(2 ** 31));
  if (o.runAt !== undefined && o.delayMs !== undefined) {
    throw new InvalidArgumentError(`${argPrefix}runAt`, "give runAt or delayMs, not both");
  }
  let runAt = now;
  if (o.delayMs !== undefined) runAt = now + checkDuration(`${argPrefix}delayMs`, o.delayMs);
  if (o.runAt !== undefined) runAt = checkTime(`${argPrefix}runAt`, o.runAt);
  const maxAttempts =
    o.maxAttempts === undefined
      ? DEFAULT_MAX_ATTEMPTS
      : checkInteger(`${argPrefix}maxAttempts`, o.maxAttempts, 1);
  validateBackoff(`${argPrefix}backoff`, o.backoff);
  const key = o.key === undefined || o.key === null ? null : checkName(`${argPrefix}key`, o.key);
  const timeoutMs = o.timeoutMs === undefined ? null : checkTimeout(`${argPrefix}timeoutMs`, o.timeoutMs);
  return {
    type: name,
    payload: text,
    value,
    priority,
    runAt: Math.round(runAt),
    maxAttempts,
    backoff: o.backoff ? JSON.stringify(o.backoff) : null,
    key,
    timeoutMs,
    trace: activeTraceparent(),
  };
}

export function normalizeList(options: ListOptions | undefined) {
  const o = options ?? {};
  return {
    state: o.state === undefined ? null : checkState("state", o.state),
    type: o.type === undefined ? null : checkName("type", o.type),
    limit: o.limit === undefined ? 100 : checkInteger("limit", o.limit, 1),
    offset: o.offset === undefined ? 0 : checkInteger("offset", o.offset, 0),
    sortBy: checkOneOf("sortBy", o.sortBy ?? "created", SORTS),
    order: checkOrder(o.order ?? "asc"),
  };
}

function checkOrder(v: unknown): "asc" | "desc" {
  if (v !== "asc" && v !== "desc")
    throw new InvalidArgumentError("order", `must be asc or desc, got ${String(v)}`);
  return v;
}

const DAY_MS = 86_400_000;

/** cleanup's options: finished states only, 7 days by default. */
export function normalizeCleanup(options: CleanupOptions | undefined): {
  olderThanMs: number;
  states: JobState[];
} {
  const o = options ?? {};
  const olderThanMs = o.olderThanMs === undefined ? 7 * DAY_MS : checkDuration("olderThanMs", o.olderThanMs);
  if (o.states !== undefined && !Array.isArray(o.states))
    throw new InvalidArgumentError("states", "must be an array");
  const states = (o.states ?? FINISHED_STATES).map((s) => checkState("states", s));
  if (states.includes("pending") || states.includes("running")) {
    throw new InvalidArgumentError(
      "states",
      "cleanup removes finished jobs only (completed, failed, cancelled)",
    );
  }
  return { olderThanMs, states };
}

/**
 * stuck's thresholds: how long a job may run (olderThanMs, 5 minutes by default) and how long a
 * due job may wait (pendingForMs, olderThanMs by default) before it counts as stuck.
 */
export function normalizeStuck(options: StuckOptions | undefined): {
  olderThanMs: number;
  pendingForMs: number;
} {
  const o = options ?? {};
  if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
  const olderThanMs = o.olderThanMs === undefined ? 300_000 : checkDuration("olderThanMs", o.olderThanMs);
  const pendingForMs =
    o.pendingForMs === undefined ? olderThanMs : checkDuration("pendingForMs", o.pendingForMs);
  return { olderThanMs, pendingForMs };
}

/** The Job a freshly added row is, before anyone has read it back. */
export function pendingJob(id: number, queue: string, r: NormalizedAdd, now: number, payload: unknown): Job {
  return {
    id,
    queue,
    type: r.type,
    payload,
    state: "pending",
    priority: r.priority,
    runAt: r.runAt,
    attempts: 0,
    maxAttempts: r.maxAttempts,
    backoff: r.backoff === null ? null : JSON.parse(r.backoff),
    key: r.key,
    leaseOwner: null,
    leaseExpiresAt: null,
    lastError: null,
    timeoutMs: r.timeoutMs,
    createdAt: now,
    startedAt: null,
    finishedAt: null,
    trace: r.trace,
  };
}

/** A JobFilter checked, with nulls for the conditions not given. */
export function normalizeFilter(filter: JobFilter | undefined) {
  const f = filter ?? {};
  if (typeof f !== "object") throw new InvalidArgumentError("filter", "must be an object");
  if (f.q !== undefined && (typeof f.q !== "string" || f.q.length > 1000))
    throw new InvalidArgumentError("q", "must be a string of at most 1000 characters");
  return {
    state: f.state === undefined ? null : checkState("state", f.state),
    type: f.type === undefined ? null : checkName("type", f.type),
    q: f.q === undefined || f.q === "" ? null : f.q,
  };
}

/** `q` as a LIKE pattern (ESCAPE '\'): the caller's %, _ and \ match themselves. */
export function likePattern(q: string | null): string | null {
  return q === null ? null : `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export function normalizeUpdate(patch: JobUpdate | undefined): {
  priority: number | null;
  runAt: number | null;
} {
  if (patch === null || typeof patch !== "object")
    throw new InvalidArgumentError("update", "must be an object");
  const priority = patch.priority === undefined ? null : checkInteger("priority", patch.priority, -(2 ** 31));
  const runAt = patch.runAt === undefined ? null : checkTime("runAt", patch.runAt);
  if (priority === null && runAt === null) throw new InvalidArgumentError("update", "give priority or runAt");
  return { priority, runAt };
}

export function normalizeBulk(action: unknown, options: BulkOptions | undefined) {
  const o = options ?? {};
  const act = checkOneOf("action", action, JOB_ACTIONS);
  const priority = o.priority === undefined ? null : checkInteger("priority", o.priority, -(2 ** 31));
  if (act === "priority" && priority === null)
    throw new InvalidArgumentError("priority", "the priority action needs a priority");
  return {
    action: act,
    priority,
    expect: o.expect === undefined ? null : checkInteger("expect", o.expect, 0),
  };
}

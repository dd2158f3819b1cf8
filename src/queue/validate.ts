/**
 * Argument checks shared by Queue and MemoryQueue. Every public call validates
 * all of its input before it writes anything, and names the bad argument.
 */
import { InvalidArgumentError } from "../errors.js";
import { activeTraceparent } from "../trace.js";
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

export function checkName(argument: string, value: unknown): string {
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new InvalidArgumentError(argument, "must be a non-empty string");
  }
  if (value.length > 200) throw new InvalidArgumentError(argument, "must be at most 200 characters");
  return value;
}

/**
 * JSON.stringify silently turns NaN into null and drops undefined members;
 * a queue that did that would run a job with different input than was given.
 */
function strictReplacer(this: unknown, key: string, value: unknown): unknown {
  switch (typeof value) {
    case "number":
      if (!Number.isFinite(value)) throw new Error(`${describeKey(key)} is ${value}`);
      return value;
    case "bigint":
      throw new Error(`${describeKey(key)} is a BigInt`);
    case "function":
    case "symbol":
      throw new Error(`${describeKey(key)} is a ${typeof value}`);
    case "undefined":
      if (Array.isArray(this)) throw new Error(`${describeKey(key)} is undefined`);
      return value;
    case "object": {
      // toJSON has run already (a Date is its ISO string by now). What is left must be
      // plain: JSON would store a Map, a Set or a class instance as {} or a bag of fields.
      const kind = foreignKind(value);
      if (kind !== null)
        throw new Error(
          `${describeKey(key)} is ${kind}, which JSON cannot keep; convert it to a plain object or array`,
        );
      return value;
    }
    default:
      return value;
  }
}

const BOXED = new Set<unknown>([Number.prototype, String.prototype, Boolean.prototype]);

/** null for a value JSON keeps as it is (plain object, array, boxed primitive), else what it is. */
function foreignKind(value: object | null): string | null {
  if (value === null || Array.isArray(value)) return null;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null || BOXED.has(proto)) return null;
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  const name = typeof proto?.constructor === "function" ? proto.constructor.name : "";
  return `a ${tag !== "Object" ? tag : name || "class instance"}`;
}

function describeKey(key: string): string {
  return key === "" ? "the value" : `member "${key}"`;
}

export function serializePayload(argument: string, payload: unknown): string {
  return encodePayload(argument, payload)[0];
}

/**
 * The payload's JSON text, and the value a returned Job carries: the payload
 * itself when JSON keeps it as it is, else the text parsed back (a Date becomes
 * its ISO string, as every later read of the job will see it).
 */
export function encodePayload(argument: string, payload: unknown): [text: string, value: unknown] {
  if (payload === undefined) return ["null", null];
  // Fast path: a plain walk proves the value is clean, then V8's native stringify runs
  // without a replacer (which would take it off its fast path, ~2x slower).
  if (isPlainJson(payload, 0)) {
    try {
      return [JSON.stringify(payload), payload];
    } catch (err) {
      throw new InvalidArgumentError(argument, `is not JSON-serialisable: ${(err as Error).message}`);
    }
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload, strictReplacer);
  } catch (err) {
    const message = (err as Error).message;
    // V8's words for a cycle run to several lines of path; one sentence says it.
    const why = /circular/i.test(message) ? "it contains a cycle (an object that contains itself)" : message;
    throw new InvalidArgumentError(argument, `is not JSON-serialisable: ${why}`);
  }
  if (text === undefined) throw new InvalidArgumentError(argument, "is not JSON-serialisable");
  return [text, JSON.parse(text)];
}

/** True when JSON.stringify would keep every value as given; false means "look closer". */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "number":
      return Number.isFinite(value);
    case "string":
    case "boolean":
      return true;
    case "object": {
      if (value === null) return true;
      if (depth > 64) return false;
      if (Array.isArray(value)) {
        for (const item of value) if (item === undefined || !isPlainJson(item, depth + 1)) return false;
        return true;
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === "function") return false;
      // A Map, Set or class instance does not come back from JSON as it went in.
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        const item = (value as Record<string, unknown>)[key];
        if (item !== undefined && !isPlainJson(item, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

export function checkInteger(argument: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(argument, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

export function checkDuration(argument: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, `must be a finite number of ms >= 0, got ${String(value)}`);
  }
  return value;
}

/** A time limit: a whole number of ms, at least 1, at most what setTimeout can wait (~24.8 days). */
export function checkTimeout(argument: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new InvalidArgumentError(
      argument,
      `must be a whole number of ms from 1 to ${2 ** 31 - 1}, got ${String(value)}`,
    );
  }
  return value;
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
  if (o.runAt !== undefined) {
    const t = o.runAt instanceof Date ? o.runAt.getTime() : o.runAt;
    if (typeof t !== "number" || !Number.isFinite(t) || t < 0) {
      throw new InvalidArgumentError(
        `${argPrefix}runAt`,
        `must be a Date or epoch ms, got ${String(o.runAt)}`,
      );
    }
    runAt = Math.round(t);
  }
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

/** `value` if it is one of `allowed`; the error lists them. */
export function checkOneOf<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new InvalidArgumentError(
      argument,
      `must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
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
  let runAt: number | null = null;
  if (patch.runAt !== undefined) {
    const t = patch.runAt instanceof Date ? patch.runAt.getTime() : patch.runAt;
    if (typeof t !== "number" || !Number.isFinite(t) || t < 0)
      throw new InvalidArgumentError("runAt", `must be a Date or epoch ms, got ${String(patch.runAt)}`);
    runAt = Math.round(t);
  }
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

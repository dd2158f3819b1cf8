/**
 * When periodic jobs fire. An interval schedule stays on its grid (missed
 * periods are skipped, not replayed in a burst); a cron schedule is read by
 * croner. The queue advances `next_run_at` in the same transaction that
 * enqueues the job, which is what makes a period fire once across processes.
 */
import { Cron } from "croner";
import { InvalidArgumentError } from "../errors.js";
import { serializePayload } from "../json-payload.js";
import { checkInteger, checkName } from "../validate.js";
import type { PeriodicOptions } from "./types.js";
import { DEFAULT_MAX_ATTEMPTS, type NormalizedAdd } from "./validate.js";

export function nextIntervalRun(scheduledAt: number, everyMs: number, now: number): number {
  if (scheduledAt > now) return scheduledAt;
  const missed = Math.floor((now - scheduledAt) / everyMs) + 1;
  return scheduledAt + missed * everyMs;
}

export function parseCron(expression: string, timezone?: string): Cron {
  if (timezone !== undefined) {
    // croner only finds out at the first nextRun, with a TypeError that names no argument.
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    } catch {
      throw new InvalidArgumentError("timezone", `unknown IANA time zone ${JSON.stringify(timezone)}`);
    }
  }
  try {
    return new Cron(expression, { timezone, paused: true });
  } catch (err) {
    throw new InvalidArgumentError("expression", `invalid cron expression: ${(err as Error).message}`);
  }
}

export function nextCronRun(expression: string, timezone: string | null, now: number): number {
  const next = parseCron(expression, timezone ?? undefined).nextRun(new Date(now));
  if (!next) throw new InvalidArgumentError("expression", `cron expression ${expression} never fires again`);
  return next.getTime();
}

/** A validated periodic schedule, as both queues store it. */
export interface PeriodicSpec {
  name: string;
  type: string;
  /** JSON text of the payload each fired job carries. */
  payload: string;
  priority: number;
  maxAttempts: number | null;
  timezone: string | null;
  everyMs: number | null;
  cron: string | null;
  /** When it fires first, if the schedule is new or changed. */
  nextRunAt: number;
}

export function everySpec(
  name: string,
  everyMs: number,
  type: string,
  payload: unknown,
  options: PeriodicOptions,
  now: number,
): PeriodicSpec {
  checkInteger("everyMs", everyMs, 1);
  return { ...commonSpec(name, type, payload, options), everyMs, cron: null, nextRunAt: now + everyMs };
}

export function cronSpec(
  name: string,
  expression: string,
  type: string,
  payload: unknown,
  options: PeriodicOptions,
  now: number,
): PeriodicSpec {
  checkName("expression", expression);
  const common = commonSpec(name, type, payload, options);
  parseCron(expression, options.timezone);
  return {
    ...common,
    everyMs: null,
    cron: expression,
    nextRunAt: nextCronRun(expression, common.timezone, now),
  };
}

function commonSpec(name: string, type: string, payload: unknown, options: PeriodicOptions) {
  if (options === null || typeof options !== "object")
    throw new InvalidArgumentError("options", "must be an object");
  return {
    name: checkName("name", name),
    type: checkName("type", type),
    payload: serializePayload("payload", payload),
    priority: options.priority === undefined ? 0 : checkInteger("priority", options.priority, -(2 ** 31)),
    maxAttempts:
      options.maxAttempts === undefined ? null : checkInteger("maxAttempts", options.maxAttempts, 1),
    timezone: options.timezone ?? null,
  };
}

/** The next time a schedule that was due at `scheduledAt` fires, seen at `now`. */
export function nextPeriodicRun(
  s: { everyMs: number | null; cron: string | null; timezone: string | null },
  scheduledAt: number,
  now: number,
): number {
  return s.everyMs !== null
    ? nextIntervalRun(scheduledAt, s.everyMs, now)
    : nextCronRun(s.cron!, s.timezone, now);
}

/** The job a schedule enqueues when it fires. */
export function periodicJob(
  s: { type: string; payload: string; priority: number; maxAttempts: number | null },
  now: number,
): NormalizedAdd {
  return {
    type: s.type,
    payload: s.payload,
    value: JSON.parse(s.payload),
    priority: s.priority,
    runAt: now,
    maxAttempts: s.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    backoff: null,
    key: null,
    timeoutMs: null,
    // A schedule fires on its own clock: no caller's span is its parent.
    trace: null,
  };
}

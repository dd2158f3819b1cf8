/**
 * Worker options: what `new Worker(queue, handlers, options)` and
 * `worker.stop(options)` accept, and the checks that refuse a bad value
 * before the worker claims anything.
 *
 * Contract: `workerSettings` checks the handlers and every option, naming
 * the first bad one in an InvalidArgumentError, and returns the settings
 * with every default filled in; `stopLimit` does the same for `stop`.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { InvalidArgumentError } from "../errors.js";
import { checkInteger, checkObject, checkTimeout } from "../validate.js";
import type { Handlers } from "./handler.js";

export interface WorkerOptions {
  /** Handlers running at once. */
  concurrency?: number;
  /** Wait between claims when the queue had nothing due. */
  pollIntervalMs?: number;
  /** Lease taken on each claimed job, renewed every leaseMs / 3 while held. */
  leaseMs?: number;
  /** Jobs claimed per transaction, and outcomes written per transaction at most; default max(concurrency, 100). */
  batchSize?: number;
  /** How often expired leases are returned to pending. */
  reapIntervalMs?: number;
  id?: string;
  /**
   * Claim only jobs whose type has a handler here, leaving the rest to other workers
   * (default false: every job is claimed, and one with no handler fails at once).
   */
  handledTypesOnly?: boolean;
  /** Time limit of one attempt of any job, ms (default: none). A job's own timeoutMs wins. */
  timeoutMs?: number;
  /** Time limit of one attempt per job type, ms; wins over `timeoutMs`, loses to the job's own. */
  timeouts?: Record<string, number>;
}

export interface StopOptions {
  /**
   * Wait at most this long for running handlers (default: for ever). Those still running are
   * aborted and abandoned: their leases are no longer renewed, so they return to pending
   * (an attempt spent) when the lease expires, and their outcome is never written.
   */
  timeoutMs?: number;
}

/** A worker's options, checked, with their defaults. */
export interface WorkerSettings {
  readonly id: string;
  readonly concurrency: number;
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  readonly batchSize: number;
  readonly reapIntervalMs: number;
  /** The job types to claim; undefined: every type. */
  readonly types: readonly string[] | undefined;
  readonly timeoutMs: number | null;
  readonly timeouts: ReadonlyMap<string, number>;
}

export function workerSettings(handlers: Handlers, options: WorkerOptions): WorkerSettings {
  if (handlers === null || typeof handlers !== "object") {
    throw new InvalidArgumentError("handlers", "must be an object mapping job types to functions");
  }
  for (const [type, fn] of Object.entries(handlers)) {
    if (typeof fn !== "function") throw new InvalidArgumentError(`handlers.${type}`, "must be a function");
  }
  checkObject("options", options);
  // In the order of the fields, so that of several bad options the first is named.
  const concurrency = checkInteger("concurrency", options.concurrency ?? 10, 1);
  const pollIntervalMs = checkInteger("pollIntervalMs", options.pollIntervalMs ?? 500, 1);
  const leaseMs = checkInteger("leaseMs", options.leaseMs ?? 30_000, 1);
  const batchSize = checkInteger("batchSize", options.batchSize ?? Math.max(concurrency, 100), 1);
  const reapIntervalMs = checkInteger(
    "reapIntervalMs",
    options.reapIntervalMs ?? Math.min(5_000, leaseMs),
    1,
  );
  const timeoutMs = options.timeoutMs === undefined ? null : checkTimeout("timeoutMs", options.timeoutMs);
  if (options.timeouts !== undefined && (options.timeouts === null || typeof options.timeouts !== "object"))
    throw new InvalidArgumentError("timeouts", "must be an object mapping job types to ms");
  const timeouts = new Map(
    Object.entries(options.timeouts ?? {}).map(([type, t]) => [type, checkTimeout(`timeouts.${type}`, t)]),
  );
  return {
    id: options.id ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`,
    concurrency,
    pollIntervalMs,
    leaseMs,
    batchSize,
    reapIntervalMs,
    types: options.handledTypesOnly ? Object.keys(handlers) : undefined,
    timeoutMs,
    timeouts,
  };
}

/** How long `stop` waits for running handlers, in ms; null: for ever. */
export function stopLimit(options: StopOptions): number | null {
  checkObject("options", options);
  return options.timeoutMs === undefined ? null : checkTimeout("timeoutMs", options.timeoutMs);
}

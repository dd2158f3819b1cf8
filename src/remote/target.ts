/**
 * RemoteTarget: the one interface every remote store is driven through
 * (open-target.ts picks the adapter from a URL; it lives apart so that the
 * adapters can import this interface without importing one another).
 *
 * Contract: `apply` applies a payload (and `copy` a full push, see
 * copy-job.ts) and records its sync key in
 * `_tidewire_sync_history` in one transaction where the target has them,
 * and applies nothing when the key is already recorded ("duplicate", which
 * counts as success). An adapter connects on first use, so `openTarget`
 * only validates and never does I/O; a bad URL is an InvalidArgumentError
 * (a usage error), a target that cannot be reached a RemoteError. `id` is
 * the URL without secrets (password, auth token): the cursor's peer id and
 * the name errors use.
 */
import { TidewireError } from "../errors.js";
import type { Capture } from "./capture.js";
import type { CopyJob } from "./copy-job.js";
import type { Payload } from "./payload.js";

export type Backend = "sqlite" | "postgres" | "libsql" | "d1";
export type ApplyOutcome = "applied" | "duplicate";

export interface RemoteTarget {
  readonly backend: Backend;
  readonly id: string;
  apply(payload: Payload, keepHistory: number): Promise<ApplyOutcome>;
  /** A full push: every table built, filled and swapped in one transaction with the job's key (copy-job.ts). */
  copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome>;
  /**
   * The target's capture, for pulling the edits made on it (capture.ts);
   * absent on a target that cannot be pulled from. Its apply must then keep
   * its own writes out of the capture.
   */
  capture?(): Capture;
  close(): Promise<void>;
}

/**
 * The code of a RemoteError for a payload the target refused because of its
 * data (a value its column's type cannot hold) or because the target's
 * tables no longer match: resending the same payload cannot succeed, so the
 * push drops it and rebuilds from the current rows (remote-sync.ts).
 */
export const DATA_REFUSED = "ERR_REMOTE_DATA";

/** The target failed or could not be reached; whatever it was sending is kept for the next attempt. */
export class RemoteError extends TidewireError {
  constructor(message: string, code = "ERR_REMOTE") {
    super(message, code);
    this.name = "RemoteError";
  }
}

/** A one-line description of what went wrong, for an error message. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length) return describeError(err.errors[0]);
  const e = err as { message?: unknown; code?: unknown };
  const msg = typeof e?.message === "string" && e.message ? e.message : String(err);
  const line = msg.split("\n")[0] ?? msg;
  return typeof e?.code === "string" && !line.includes(e.code) ? `${line} (${e.code})` : line;
}

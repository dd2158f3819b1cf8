/**
 * RemoteTarget: the one interface every remote store is driven through, and
 * `openTarget`, which picks the adapter from the target's URL.
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
import { InvalidArgumentError, TidewireError } from "../errors.js";
import type { Capture } from "./capture.js";
import type { CopyJob } from "./copy-job.js";
import { type D1Options, D1Target } from "./d1-target.js";
import { LibsqlTarget } from "./libsql-target.js";
import type { Payload } from "./payload.js";
import { PostgresTarget } from "./postgres-target.js";
import { SqliteTarget } from "./sqlite-target.js";

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

export interface TargetOptions {
  /** For `d1:NAME`: wrangler's --local / --remote / --config. */
  d1?: D1Options;
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

export function openTarget(url: unknown, options: TargetOptions = {}): RemoteTarget {
  if (typeof url !== "string" || url.trim() === "") {
    throw new InvalidArgumentError(
      "target",
      "must be a URL: sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME",
    );
  }
  if (options === null || typeof options !== "object")
    throw new InvalidArgumentError("options", "must be an object");
  if (options.d1 !== undefined && !url.startsWith("d1:")) {
    throw new InvalidArgumentError("target", "--local, --remote and --config apply to d1:NAME targets only");
  }
  if (url.startsWith("sqlite:")) return new SqliteTarget(url.slice("sqlite:".length));
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) return new PostgresTarget(url);
  if (
    url.startsWith("libsql://") ||
    url.startsWith("file:") ||
    url.startsWith("https://") ||
    url.startsWith("http://")
  ) {
    return new LibsqlTarget(url);
  }
  if (url.startsWith("d1:")) return new D1Target(url.slice("d1:".length), options.d1 ?? {});
  throw new InvalidArgumentError(
    "target",
    `unknown kind of target ${JSON.stringify(url.split(":")[0])}; use sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME`,
  );
}

/** A one-line description of what went wrong, for an error message. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length) return describeError(err.errors[0]);
  const e = err as { message?: unknown; code?: unknown };
  const msg = typeof e?.message === "string" && e.message ? e.message : String(err);
  const line = msg.split("\n")[0] ?? msg;
  return typeof e?.code === "string" && !line.includes(e.code) ? `${line} (${e.code})` : line;
}

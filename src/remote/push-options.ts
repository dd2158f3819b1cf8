/**
 * The options of a push (RemoteSyncOptions) and what one cycle reports
 * (PushResult), with the checks of the options that are not plain numbers
 * or names.
 *
 * Contract: a check answers bad input with an InvalidArgumentError naming
 * the option, before anything is opened or sent.
 */
import { InvalidArgumentError } from "../errors.js";
import { checkFlag, checkName, checkObject } from "../validate.js";
import type { TargetOptions } from "./open-target.js";
import type { PullResult } from "./pull.js";
import type { Backend, RemoteTarget } from "./target.js";
import type { Fallback } from "./targets/postgres-plan.js";

export interface RemoteSyncOptions extends TargetOptions {
  /** A target URL (sqlite:PATH, postgres://…, libsql://…, file:PATH, d1:NAME) or an adapter. */
  target: string | RemoteTarget;
  /** Only the tables of these buckets (default: every tracked table). */
  buckets?: string[];
  /** Only these tracked tables (with `buckets`, those of them in the buckets). */
  tables?: string[];
  /** Changes per incremental payload (default 1000). */
  batchSize?: number;
  /** Rows per batch a full push reads, and per progress report (default 5000). */
  chunkRows?: number;
  /** A full push also copies the tables nobody tracks (refreshed at each full push only, e.g. --resync). */
  allTables?: boolean;
  /** A full push also creates the views (PostgreSQL takes those whose SQL it understands; the others are warnings). */
  withViews?: boolean;
  /** History rows the target keeps; 0 keeps all (default 1000). */
  keepHistory?: number;
  /** The outbox payloads are spooled in (default "remote"). */
  outbox?: string;
  /** PostgreSQL only: a column's type, chosen instead of the mapping, as `{ "table.column": "numeric(8,2)" }`. */
  pgTypes?: Record<string, string>;
  onProgress?: (p: PushProgress) => void;
  /**
   * What `sync` and `start` do each cycle: push, pull the edits made on the
   * target, or both (pull first). Default "both" where the target can be
   * pulled from (it has capture), else "push".
   */
  direction?: SyncDirection;
}

export type SyncDirection = "push" | "pull" | "both";

/** One cycle of `sync`: what each direction did (null for a direction not run). */
export interface SyncResult {
  target: string;
  direction: SyncDirection;
  pull: PullResult | null;
  push: PushResult | null;
}

export interface PushProgress {
  table: string;
  rows: number;
  total: number;
}

export interface PushResult {
  target: string;
  backend: Backend;
  mode: "full" | "incremental";
  /** Payloads sent, spooled ones from an earlier failed cycle included. */
  payloads: number;
  /** Of those, how many the target already had (counted as success). */
  duplicates: number;
  /** Spooled payloads from an earlier cycle sent first. */
  retried: number;
  /** Row upserts and deletes sent. */
  mutations: number;
  /** A full push to PostgreSQL: the columns created with another type than their declaration maps to, and why. */
  fallbacks: Fallback[];
  /** A full push: what the target could not take (an index or view it cannot express, a virtual table), each one sentence. */
  warnings: string[];
  cursor: string;
  durationMs: number;
}

export interface CycleOptions {
  /** Push everything again (a full push), whatever the cursor says. */
  resync?: boolean;
}

/** The options of one cycle (`push`, `sync`); returns `resync`. */
export function checkCycleOptions(options: unknown): boolean {
  return checkFlag("resync", checkObject("options", options as CycleOptions).resync);
}

export const DIRECTIONS: readonly SyncDirection[] = ["push", "pull", "both"];

export function checkDirection(d: unknown): SyncDirection {
  if (!DIRECTIONS.includes(d as SyncDirection))
    throw new InvalidArgumentError("direction", `must be push, pull or both, got ${JSON.stringify(d)}`);
  return d as SyncDirection;
}

export function checkBuckets(b: unknown, argument = "buckets"): string[] {
  if (!Array.isArray(b) || b.length === 0)
    throw new InvalidArgumentError(argument, "must be a non-empty array of names");
  return b.map((x, i) => checkName(`${argument}[${i}]`, x));
}

export function checkTarget(t: unknown): RemoteTarget {
  const o = t as Partial<RemoteTarget> | null;
  if (
    !o ||
    typeof o !== "object" ||
    typeof o.apply !== "function" ||
    typeof o.copy !== "function" ||
    typeof o.id !== "string" ||
    typeof o.close !== "function"
  ) {
    throw new InvalidArgumentError(
      "target",
      "must be a target URL or an object with id, backend, apply, copy and close",
    );
  }
  return o as RemoteTarget;
}

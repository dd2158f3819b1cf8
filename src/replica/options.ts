/**
 * Replica options: what `Replica.open` and `Replica.attach` accept, and the
 * checks that refuse a bad value before anything is opened.
 *
 * Contract: `checkOptions` throws an InvalidArgumentError naming the first
 * bad option; `checkMs` and `checkConflictId` check the arguments of the
 * replica's methods the same way.
 */
import { InvalidArgumentError } from "../errors.js";
import type { StoreOptions } from "../store.js";
import { checkNodeId } from "./hlc.js";

export interface ReplicaOptions {
  /** This database's node id, the first time it is opened as a replica (default: random). */
  nodeId?: string;
  /** Refuse changes whose clock is further ahead of local time than this (default 60 000). */
  maxDriftMs?: number;
  /**
   * Keep and serve onward the log of tables this database does not track
   * (they must carry their bucket); without it such changes are refused.
   * Tracking such a table later writes its rows into it. Default false.
   * The one relay setting: a Hub over this replica reads it from here.
   */
  relay?: boolean;
  /**
   * Ingest staged writes this often while the replica is open (default 1000
   * ms; 0: only when the log is read). The timer never keeps the process alive.
   */
  ingestIntervalMs?: number;
  /**
   * Staged events per ingest transaction (default 100,000), so a bulk load
   * another program staged holds the write lock a chunk at a time.
   */
  ingestChunk?: number;
  /** Options for the Store that `open` creates. */
  store?: StoreOptions;
}

export function checkOptions(options: ReplicaOptions): void {
  if (options === null || typeof options !== "object")
    throw new InvalidArgumentError("options", "must be an object");
  if (options.nodeId !== undefined) checkNodeId("nodeId", options.nodeId);
  if (options.relay !== undefined && typeof options.relay !== "boolean")
    throw new InvalidArgumentError("relay", `must be a boolean, got ${String(options.relay)}`);
  const every = options.ingestIntervalMs;
  if (every !== undefined && (typeof every !== "number" || !Number.isFinite(every) || every < 0)) {
    throw new InvalidArgumentError(
      "ingestIntervalMs",
      `must be a finite number of ms >= 0, got ${String(every)}`,
    );
  }
  const chunk = options.ingestChunk;
  if (chunk !== undefined && (!Number.isSafeInteger(chunk) || chunk < 1)) {
    throw new InvalidArgumentError("ingestChunk", `must be a whole number >= 1, got ${String(chunk)}`);
  }
  if (options.maxDriftMs !== undefined) checkMs("maxDriftMs", options.maxDriftMs);
}

export function checkMs(argument: string, d: unknown): void {
  if (typeof d !== "number" || !Number.isFinite(d) || d < 0) {
    throw new InvalidArgumentError(argument, `must be a finite number of ms >= 0, got ${String(d)}`);
  }
}

export function checkConflictId(id: unknown): void {
  if (!Number.isSafeInteger(id) || (id as number) < 1)
    throw new InvalidArgumentError("id", `must be a conflict id (a whole number >= 1), got ${String(id)}`);
}

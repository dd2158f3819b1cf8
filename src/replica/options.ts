/**
 * Replica options: what `Replica.open` and `Replica.attach` accept, and the
 * checks that refuse a bad value before anything is opened.
 *
 * Contract: `checkOptions` throws an InvalidArgumentError naming the first
 * bad option; `checkConflictId` checks the replica's conflict ids the same way.
 */

import { checkNodeId } from "../node-id.js";
import type { StoreOptions } from "../store.js";
import { checkDuration, checkFlag, checkInteger, checkObject } from "../validate.js";

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
  checkObject("options", options);
  if (options.nodeId !== undefined) checkNodeId("nodeId", options.nodeId);
  checkFlag("relay", options.relay);
  if (options.ingestIntervalMs !== undefined) checkDuration("ingestIntervalMs", options.ingestIntervalMs);
  if (options.ingestChunk !== undefined) checkInteger("ingestChunk", options.ingestChunk, 1);
  if (options.maxDriftMs !== undefined) checkDuration("maxDriftMs", options.maxDriftMs);
}

/** A conflict id as the replica's conflict methods take it: a whole number >= 1. */
export function checkConflictId(id: unknown): void {
  checkInteger("id", id, 1);
}

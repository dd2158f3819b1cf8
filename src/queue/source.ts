/**
 * WorkerSource: the worker's side of a queue — claim, settle, renew, release,
 * reap, and a wake-up when jobs are added — kept out of the public `Queue` and
 * `MemoryQueue` types, whose users add, read and move jobs but never lease them.
 *
 * Contract: this module is internal (the package does not export it). A queue
 * registers its source once, in its constructor, with `provideSource`; the
 * Worker asks `workerSource(queue)` once, in its own. The lookup is a WeakMap,
 * so the published .d.ts of a queue names none of this, and the per-job path
 * costs nothing more than a method call on the source.
 */
import { EventEmitter } from "node:events";
import { InvalidArgumentError } from "../errors.js";
import type { Job, JobQueue } from "./types.js";

/** The outcome of one attempt, written back in batches by the worker. */
export type Settlement = { job: Job; ok: true } | { job: Job; ok: false; error: string; retry: boolean };

export interface SettleResult {
  /** Settlements that matched a job still leased to the owner. */
  applied: Array<Settlement & { final: boolean }>;
  /** Settlements whose lease had been lost (expired and taken or moved); dropped. */
  stale: Settlement[];
}

/** What a Worker needs from a queue beyond its public API; Queue and MemoryQueue each provide one. */
export interface WorkerSource {
  now(): number;
  /** Takes up to `limit` due jobs (of `types` only, when given) and leases them to `owner`. */
  claim(owner: string, limit: number, leaseMs: number, types?: readonly string[]): Job[];
  /** Writes outcomes; one lands only while its lease holds (same owner, same attempt). */
  settle(owner: string, settlements: Settlement[]): SettleResult;
  /** Renews every lease `owner` holds; returns the ids of the jobs it still holds. */
  extendLeases(owner: string, leaseMs: number): number[];
  /** Returns claimed but unstarted jobs to pending without spending an attempt. */
  release(owner: string, jobs: Job[]): number;
  /** Returns jobs whose lease expired to pending (or failed, if out of attempts). */
  reapExpired(): number;
  /** Called when a job becomes due in this process, so an idle worker need not wait for its poll. */
  onAdded(listener: () => void): () => void;
}

const sources = new WeakMap<object, WorkerSource>();

/** Called by a queue's constructor: `source` is what a Worker on `queue` uses. */
export function provideSource(queue: JobQueue, source: WorkerSource): void {
  sources.set(queue, source);
}

/** The source of a Queue or MemoryQueue (or of a queue a test wrapped and registered). */
export function workerSource(queue: JobQueue): WorkerSource {
  const source = sources.get(queue);
  if (!source) throw new InvalidArgumentError("queue", "must be a Queue or a MemoryQueue");
  return source;
}

/** The "jobs were added" signal of one queue object: emitted by its writes, heard by its workers. */
export class AddedSignal {
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  emit(): void {
    this.events.emit("added");
  }

  on(listener: () => void): () => void {
    this.events.on("added", listener);
    return () => this.events.off("added", listener);
  }
}

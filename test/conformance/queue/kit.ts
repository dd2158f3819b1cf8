/**
 * Contract: what the queue conformance cases share: time units, the owner
 * that claims, the claim order a queue must follow, and a queue on a manual
 * clock made from one implementation.
 */
import { expect } from "vitest";
import type { BackoffOptions, Job, JobQueue } from "../../../src/index.js";
import { workerSource } from "../../../src/queue/source.js";
import { ManualClock } from "../../helpers.js";
import type { QueueImpl } from "../queue-impls.js";

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
export const OWNER = "test-owner";

/** The order claims must follow: priority high first, then due time, then id. */
export const claimOrder = (a: Job, b: Job) => b.priority - a.priority || a.runAt - b.runAt || a.id - b.id;

export function claimOne(q: JobQueue, leaseMs = 30_000): Job {
  const [job] = workerSource(q).claim(OWNER, 1, leaseMs);
  if (!job) throw new Error("nothing to claim");
  return job;
}

export function complete(q: JobQueue, job: Job): void {
  expect(workerSource(q).settle(OWNER, [{ job, ok: true }]).applied).toHaveLength(1);
}

export function failFinal(q: JobQueue, job: Job, error = "boom"): void {
  expect(workerSource(q).settle(OWNER, [{ job, ok: false, error, retry: false }]).applied).toHaveLength(1);
}

/** A new queue of `impl` on a manual clock of its own. */
export function queueSetup(impl: QueueImpl) {
  return (options: { backoff?: BackoffOptions } = {}) => {
    const clock = new ManualClock();
    const q = impl.make({ ...options, clock: clock.now });
    return { q, clock };
  };
}

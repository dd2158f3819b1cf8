/**
 * MemoryLeases: the MemoryQueue's WorkerSource (source.ts) — claim, settle,
 * renew, release and reap over the queue's own Map of jobs — with the SQLite
 * Leases' rules: a claim takes due jobs in (priority DESC, runAt, id) order,
 * and an outcome or a release lands only while its lease holds (same owner,
 * same attempt); a lapsed lease is a spent attempt.
 */
import { exponentialDelay } from "../backoff.js";
import { resolveBackoff } from "./backoff.js";
import type { AddedSignal, Settlement, SettleResult, WorkerSource } from "./source.js";
import type { BackoffOptions, Job } from "./types.js";

const byClaimOrder = (a: Job, b: Job) => b.priority - a.priority || a.runAt - b.runAt || a.id - b.id;

export class MemoryLeases implements WorkerSource {
  constructor(
    private readonly jobs: Map<number, Job>,
    private readonly backoff: Required<BackoffOptions>,
    private readonly clock: () => number,
    private readonly added: AddedSignal,
  ) {}

  now(): number {
    return this.clock();
  }

  onAdded(listener: () => void): () => void {
    return this.added.on(listener);
  }

  claim(owner: string, limit: number, leaseMs: number, types?: readonly string[]): Job[] {
    const now = this.now();
    const due = [...this.jobs.values()]
      .filter((j) => j.state === "pending" && j.runAt <= now && (!types || types.includes(j.type)))
      .sort(byClaimOrder)
      .slice(0, limit);
    for (const j of due) {
      j.state = "running";
      j.attempts++;
      j.leaseOwner = owner;
      j.leaseExpiresAt = now + leaseMs;
      j.startedAt = now;
    }
    return due.map(copyJob);
  }

  settle(owner: string, settlements: Settlement[]): SettleResult {
    const now = this.now();
    const result: SettleResult = { applied: [], stale: [] };
    for (const s of settlements) {
      const j = this.jobs.get(s.job.id);
      if (j?.state !== "running" || j.leaseOwner !== owner || j.attempts !== s.job.attempts) {
        result.stale.push(s);
        continue;
      }
      j.leaseOwner = null;
      j.leaseExpiresAt = null;
      if (s.ok) {
        Object.assign(j, { state: "completed", finishedAt: now });
        result.applied.push({ ...s, final: true });
      } else if (s.retry && j.attempts < j.maxAttempts) {
        const backoff = j.backoff ? resolveBackoff(this.backoff, j.backoff) : this.backoff;
        Object.assign(j, {
          state: "pending",
          runAt: now + exponentialDelay(j.attempts - 1, backoff),
          lastError: s.error,
        });
        result.applied.push({ ...s, final: false });
      } else {
        Object.assign(j, { state: "failed", finishedAt: now, lastError: s.error });
        result.applied.push({ ...s, final: true });
      }
    }
    return result;
  }

  extendLeases(owner: string, leaseMs: number): number[] {
    const until = this.now() + leaseMs;
    const renewed: number[] = [];
    for (const j of this.jobs.values()) {
      if (j.state === "running" && j.leaseOwner === owner) {
        j.leaseExpiresAt = until;
        renewed.push(j.id);
      }
    }
    return renewed;
  }

  release(owner: string, jobs: Job[]): number {
    let n = 0;
    for (const held of jobs) {
      const j = this.jobs.get(held.id);
      if (j && j.state === "running" && j.leaseOwner === owner && j.attempts === held.attempts) {
        Object.assign(j, {
          state: "pending",
          attempts: j.attempts - 1,
          leaseOwner: null,
          leaseExpiresAt: null,
          startedAt: null,
        });
        n++;
      }
    }
    if (n > 0) this.added.emit();
    return n;
  }

  reapExpired(): number {
    const now = this.now();
    let n = 0;
    for (const j of this.jobs.values()) {
      if (j.state !== "running" || (j.leaseExpiresAt ?? 0) >= now) continue;
      const final = j.attempts >= j.maxAttempts;
      j.lastError = `lease expired: worker ${j.leaseOwner ?? "?"} stopped renewing it`;
      Object.assign(j, {
        state: final ? "failed" : "pending",
        finishedAt: final ? now : null,
        runAt: now,
        leaseOwner: null,
        leaseExpiresAt: null,
      });
      n++;
    }
    if (n > 0) this.added.emit();
    return n;
  }
}

/** Callers get their own copy, payload included, as they would from a row read back from SQLite. */
export function copyJob(job: Job): Job {
  return {
    ...job,
    payload: structuredClone(job.payload),
    backoff: job.backoff && { ...job.backoff },
  };
}

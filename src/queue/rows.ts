/**
 * The `tw_jobs` row as SQLite returns it, and its mapping to the public Job.
 * Shared by the Queue's two halves (queue.ts and leases.ts).
 */
import type { Job, JobState } from "./types.js";

export interface JobRow {
  id: number;
  queue: string;
  type: string;
  payload: string;
  state: JobState;
  priority: number;
  run_at: number;
  attempts: number;
  max_attempts: number;
  backoff: string | null;
  key: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  last_error: string | null;
  timeout_ms: number | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  trace: string | null;
}

export function toJob(r: JobRow): Job {
  return {
    id: r.id,
    queue: r.queue,
    type: r.type,
    payload: JSON.parse(r.payload),
    state: r.state,
    priority: r.priority,
    runAt: r.run_at,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    backoff: r.backoff === null ? null : JSON.parse(r.backoff),
    key: r.key,
    leaseOwner: r.lease_owner,
    leaseExpiresAt: r.lease_expires_at,
    lastError: r.last_error,
    timeoutMs: r.timeout_ms,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    trace: r.trace,
  };
}

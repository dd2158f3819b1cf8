/**
 * The CLI's text for the operator's stats, shared by `tidewire status` and
 * `tidewire jobs stats`: jobs and attempts per state and queue, messages per
 * state and outbox, and the file's size and free pages.
 */
import type { OutboxCounts } from "../outbox/types.js";
import { JOB_STATES, type QueueStats } from "../queue/types.js";
import type { StorageStats } from "../storage.js";
import { table } from "./io.js";

/** One row of counts per queue, and under it one of the attempts those jobs spent. */
export function queuesTable(queues: Record<string, QueueStats>): string {
  return table(
    ["QUEUE", ...JOB_STATES.map((s) => s.toUpperCase())],
    Object.entries(queues).flatMap(([name, q]) => [
      [name, ...JOB_STATES.map((s) => String(q[s]))],
      [`  attempts`, ...JOB_STATES.map((s) => String(q.attempts[s]))],
    ]),
  );
}

export function outboxesTable(outboxes: Record<string, OutboxCounts>): string {
  const states = ["incoming", "active", "deferred", "delivered", "bounced"] as const;
  return table(
    ["OUTBOX", ...states.map((s) => s.toUpperCase()), "TOTAL"],
    Object.entries(outboxes).map(([name, c]) => [name, ...states.map((s) => String(c[s])), String(c.total)]),
  );
}

export function describeStorage(s: StorageStats): string {
  const hint =
    s.autoVacuum === "none" && s.freePages > 0 ? " (cannot shrink: see tidewire vacuum --help)" : "";
  return `${bytes(s.sizeBytes)} in ${s.pageCount} pages of ${s.pageSize} bytes, ${s.freePages} free (${bytes(s.freeBytes)}); WAL ${bytes(s.walBytes)}; auto-vacuum ${s.autoVacuum}${hint}`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1_048_576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1_048_576).toFixed(1)} MiB`;
}

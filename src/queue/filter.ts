/**
 * The operator's filter over jobs held in memory (MemoryQueue), with the
 * SQLite Queue's meaning: `q` is found in the payload's JSON text or the last
 * error, ASCII letters in either case, as SQLite's LIKE does.
 */
import type { Job } from "./types.js";
import type { normalizeFilter } from "./validate.js";

type Filter = ReturnType<typeof normalizeFilter>;

const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

export function matchesFilter(job: Job, f: Filter): boolean {
  if (f.state !== null && job.state !== f.state) return false;
  if (f.type !== null && job.type !== f.type) return false;
  if (f.q === null) return true;
  const q = asciiLower(f.q);
  return (
    asciiLower(JSON.stringify(job.payload) ?? "null").includes(q) ||
    (job.lastError !== null && asciiLower(job.lastError).includes(q))
  );
}

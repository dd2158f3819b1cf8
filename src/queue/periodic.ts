/**
 * When periodic jobs fire. An interval schedule stays on its grid (missed
 * periods are skipped, not replayed in a burst); a cron schedule is read by
 * croner. The queue advances `next_run_at` in the same transaction that
 * enqueues the job, which is what makes a period fire once across processes.
 */
import { Cron } from "croner";
import { InvalidArgumentError } from "../errors.js";

export function nextIntervalRun(scheduledAt: number, everyMs: number, now: number): number {
  if (scheduledAt > now) return scheduledAt;
  const missed = Math.floor((now - scheduledAt) / everyMs) + 1;
  return scheduledAt + missed * everyMs;
}

export function parseCron(expression: string, timezone?: string): Cron {
  if (timezone !== undefined) {
    // croner only finds out at the first nextRun, with a TypeError that names no argument.
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    } catch {
      throw new InvalidArgumentError("timezone", `unknown IANA time zone ${JSON.stringify(timezone)}`);
    }
  }
  try {
    return new Cron(expression, { timezone, paused: true });
  } catch (err) {
    throw new InvalidArgumentError("expression", `invalid cron expression: ${(err as Error).message}`);
  }
}

export function nextCronRun(expression: string, timezone: string | null, now: number): number {
  const next = parseCron(expression, timezone ?? undefined).nextRun(new Date(now));
  if (!next) throw new InvalidArgumentError("expression", `cron expression ${expression} never fires again`);
  return next.getTime();
}

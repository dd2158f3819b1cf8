/**
 * MemorySchedules: the MemoryQueue's periodic jobs, in a Map, with the SQLite
 * Schedules' rules (schedules.ts): saving a schedule again keeps its next run
 * unless its interval or cron changed, and keeps it paused if it was; a paused
 * schedule never fires; resuming moves its next run to the first slot after
 * the moment it resumes, so the runs missed while paused are skipped.
 */
import { nextPeriodicRun, type PeriodicSpec, periodicJob } from "./periodic.js";
import type { PeriodicJob } from "./types.js";
import type { NormalizedAdd } from "./validate.js";

/** A stored schedule: its spec (payload as JSON text) plus when it fires next and fired last. */
interface Periodic extends PeriodicSpec {
  lastRunAt: number | null;
  pausedAt: number | null;
}

export class MemorySchedules {
  private readonly periodic = new Map<string, Periodic>();

  upsert(spec: PeriodicSpec): void {
    const old = this.periodic.get(spec.name);
    const sameSchedule = old && old.everyMs === spec.everyMs && old.cron === spec.cron;
    this.periodic.set(spec.name, {
      ...spec,
      nextRunAt: sameSchedule ? old.nextRunAt : spec.nextRunAt,
      lastRunAt: old?.lastRunAt ?? null,
      pausedAt: old?.pausedAt ?? null,
    });
  }

  remove(name: string): boolean {
    return this.periodic.delete(name);
  }

  list(): PeriodicJob[] {
    return [...this.periodic.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(({ name, type, payload, everyMs, cron, nextRunAt, lastRunAt, pausedAt }) => ({
        name,
        type,
        payload: JSON.parse(payload),
        everyMs,
        cron,
        nextRunAt,
        lastRunAt,
        paused: pausedAt !== null,
        pausedAt,
      }));
  }

  pause(name: string, now: number): boolean {
    const p = this.periodic.get(name);
    if (!p || p.pausedAt !== null) return false;
    p.pausedAt = now;
    return true;
  }

  resume(name: string, now: number): boolean {
    const p = this.periodic.get(name);
    if (!p || p.pausedAt === null) return false;
    p.pausedAt = null;
    p.nextRunAt = nextPeriodicRun(p, p.nextRunAt, now);
    return true;
  }

  /** Enqueues one job per due, unpaused schedule through `enqueue`; returns how many fired. */
  fireDue(now: number, enqueue: (job: NormalizedAdd) => void): number {
    let fired = 0;
    for (const p of this.periodic.values()) {
      if (p.nextRunAt > now || p.pausedAt !== null) continue;
      enqueue(periodicJob(p, now));
      p.nextRunAt = nextPeriodicRun(p, p.nextRunAt, now);
      p.lastRunAt = now;
      fired++;
    }
    return fired;
  }
}

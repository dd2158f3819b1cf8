/**
 * `tidewire jobs schedules|pause|resume <db>`: a queue's periodic schedules
 * with their next run, and an operator's pause and resume of one of them.
 *
 * Contract: `schedules` reads only. `pause`/`resume` of a schedule that does
 * not exist is a runtime failure (exit 1, ERR_NO_SCHEDULE); of one already in
 * the asked state it succeeds and says so (`changed: false`), so a script may
 * run it twice. Resuming skips the runs missed while paused: the schedule
 * fires next at its first slot after the resume (see src/queue/schedules.ts).
 */
import type { Command } from "commander";
import { TidewireError } from "../errors.js";
import type { Queue } from "../queue/queue.js";
import type { PeriodicJob } from "../queue/types.js";
import { printJson, printText, table } from "./io.js";
import { type Common, command, withQueue } from "./jobs-command.js";

export function registerJobsSchedules(jobs: Command): void {
  command(
    jobs,
    "schedules",
    "list the periodic schedules with their next run and whether they are paused",
  ).action((db: string, flags: Common) => {
    const schedules = withQueue(db, flags.queue, (queue) => queue.listPeriodic());
    if (flags.json) printJson({ ok: true, queue: flags.queue, schedules });
    else
      printText(
        schedules.length === 0 ? `no periodic schedules in queue ${flags.queue}` : schedulesTable(schedules),
      );
  });
  for (const verb of ["pause", "resume"] as const) {
    command(
      jobs,
      verb,
      verb === "pause"
        ? "stop a periodic schedule firing until it is resumed"
        : "let a paused schedule fire again, from its next slot (the runs it missed are skipped)",
    )
      .argument("<name>", "the schedule's name")
      .action((db: string, name: string, flags: Common) => {
        const { changed, schedule } = withQueue(db, flags.queue, (queue) => toggle(queue, verb, name), true);
        if (flags.json) printJson({ ok: true, queue: flags.queue, changed, schedule });
        else printText(describe(verb, changed, schedule));
      });
  }
}

function toggle(queue: Queue, verb: "pause" | "resume", name: string) {
  const changed = verb === "pause" ? queue.pausePeriodic(name) : queue.resumePeriodic(name);
  const schedule = queue.listPeriodic().find((p) => p.name === name);
  if (!schedule)
    throw new TidewireError(
      `no periodic schedule ${JSON.stringify(name)} in queue ${queue.name}`,
      "ERR_NO_SCHEDULE",
    );
  return { changed, schedule };
}

function describe(verb: "pause" | "resume", changed: boolean, s: PeriodicJob): string {
  if (verb === "pause")
    return changed ? `schedule ${s.name} paused` : `schedule ${s.name} was already paused`;
  const next = `it fires next at ${iso(s.nextRunAt)}`;
  return changed ? `schedule ${s.name} resumed; ${next}` : `schedule ${s.name} was not paused; ${next}`;
}

function schedulesTable(list: PeriodicJob[]): string {
  return table(
    ["NAME", "TYPE", "EVERY", "NEXT RUN", "LAST RUN", "STATE"],
    list.map((p) => [
      p.name,
      p.type,
      p.cron === null ? `${p.everyMs} ms` : `cron ${p.cron}`,
      p.paused ? "-" : iso(p.nextRunAt),
      p.lastRunAt === null ? "-" : iso(p.lastRunAt),
      p.paused ? `paused since ${iso(p.pausedAt!)}` : "active",
    ]),
  );
}

function iso(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}

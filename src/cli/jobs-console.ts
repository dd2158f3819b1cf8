/**
 * The operator's knobs of `tidewire jobs`: `update <id> --priority N --run-at T`
 * (a pending job re-prioritised or re-scheduled) and the bulk forms of
 * `retry` and `cancel` (`--state S --type T` instead of an id).
 *
 * Contract: a bulk command needs at least one of --state/--type, so a missing
 * id never means "every job"; it counts the matching jobs and acts on them in
 * one transaction refused if the count moved in between (nothing changes).
 * `update` of a job that is not pending is a runtime failure (exit 1) naming
 * its state; a bad priority or time is a usage error (exit 2).
 */
import { type Command, Option, InvalidArgumentError as UsageError } from "commander";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { JOB_STATES, type JobFilter, type JobState } from "../queue/types.js";
import { nonEmpty, positiveInt, printJson, printText } from "./io.js";
import { type Common, command, found, withQueue } from "./jobs-command.js";

export interface BulkFlags extends Common {
  state?: JobState;
  type?: string;
}

export function bulkOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--state <state>", "without an id: every job in this state").choices(JOB_STATES))
    .addOption(new Option("--type <type>", "without an id: every job of this type").argParser(nonEmpty));
}

export function bulkJobs(action: "retry" | "cancel", db: string, flags: BulkFlags): void {
  if (flags.state === undefined && flags.type === undefined)
    throw new InvalidArgumentError(
      "id",
      `${action} needs a job id, or --state and/or --type to ${action} every matching job`,
    );
  const filter: JobFilter = { state: flags.state, type: flags.type };
  const { matched, changed } = withQueue(
    db,
    flags.queue,
    (queue) => {
      const matched = queue.count(filter);
      return { matched, changed: queue.bulk(action, filter, { expect: matched }) };
    },
    true,
  );
  if (flags.json) printJson({ ok: true, queue: flags.queue, action, filter, matched, changed });
  else
    printText(
      `${action === "retry" ? "retried" : "cancelled"} ${changed} of ${matched} matching job${matched === 1 ? "" : "s"} in queue ${flags.queue}`,
    );
}

interface UpdateFlags extends Common {
  priority?: number;
  runAt?: number;
}

export function registerJobsUpdate(jobs: Command): void {
  command(jobs, "update", "change a pending job's priority and/or when it runs")
    .argument("<id>", "the job's id", positiveInt)
    .addOption(new Option("--priority <n>", "the new priority (higher runs first)").argParser(integer))
    .addOption(
      new Option("--run-at <time>", "when it runs: an ISO 8601 time, epoch ms, or now").argParser(time),
    )
    .action((db: string, id: number, flags: UpdateFlags) => {
      if (flags.priority === undefined && flags.runAt === undefined)
        throw new InvalidArgumentError("update", "give --priority and/or --run-at");
      const job = withQueue(
        db,
        flags.queue,
        (queue) => {
          const before = found(queue, id);
          if (
            !queue.update(id, {
              priority: flags.priority,
              runAt: flags.runAt === -1 ? queue.now() : flags.runAt,
            })
          )
            throw new TidewireError(
              `job ${id} is ${before.state}; only a pending job can be updated`,
              "ERR_JOB_STATE",
            );
          return found(queue, id);
        },
        true,
      );
      if (flags.json) printJson({ ok: true, queue: flags.queue, job });
      else
        printText(
          `job ${id} (${job.type}) has priority ${job.priority} and runs at ${new Date(job.runAt).toISOString()}`,
        );
    });
}

function integer(value: string): number {
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || Math.abs(n) > 2 ** 31)
    throw new UsageError("Expected an integer.");
  return n;
}

/** -1 stands for "now", read from the queue's clock when the command runs. */
function time(value: string): number {
  if (value === "now") return -1;
  const n = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(n) || n < 0) throw new UsageError("Expected an ISO 8601 time, epoch ms, or now.");
  return n;
}

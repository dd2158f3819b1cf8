/**
 * `tidewire jobs list|stats|stuck|retry|cancel|cleanup <db>` (update,
 * schedules, pause and resume live beside it): the queue of a database file,
 * seen and handled from a shell.
 *
 * Contract: the database must already exist (a typo in a path must not leave
 * a fresh empty database behind), so existence is checked before the store is
 * opened. A job that cannot be retried or cancelled in its current state is a
 * failure at run time (exit 1), with the state named; a malformed id or option
 * is a usage error (exit 2).
 */
import { type Command, Option } from "commander";
import ms from "ms";
import { TidewireError } from "../errors.js";
import { outboxCounts } from "../outbox/counts.js";
import { JOB_STATES, type Job, type JobState, type SortBy } from "../queue/types.js";
import { storageStats } from "../storage.js";
import { commandGroup } from "./group.js";
import { duration, nonEmpty, nonNegativeInt, positiveInt, printJson, printText, table } from "./io.js";
import { type Common, command, found, withQueue } from "./jobs-command.js";
import { type BulkFlags, bulkJobs, bulkOptions, registerJobsUpdate } from "./jobs-console.js";
import { registerJobsSchedules } from "./jobs-schedules.js";
import { describeStorage, outboxesTable } from "./stats.js";

interface ListFlags extends Common {
  state?: JobState;
  type?: string;
  limit?: number;
  offset?: number;
  sort: SortBy;
  order: "asc" | "desc";
}

const DEFAULT_RETENTION = "7d";
const DEFAULT_STUCK = "5m";

export function registerJobs(program: Command): void {
  const jobs = commandGroup(program, "jobs", "inspect and manage the job queue in a database file");

  command(jobs, "list", "list jobs, oldest first unless --sort/--order say otherwise")
    .addOption(new Option("--state <state>", "only jobs in this state").choices(JOB_STATES))
    .addOption(new Option("--type <type>", "only jobs of this type").argParser(nonEmpty))
    .addOption(new Option("--limit <n>", "at most n jobs").argParser(positiveInt).default(100))
    .addOption(new Option("--offset <n>", "skip the first n jobs").argParser(nonNegativeInt).default(0))
    .addOption(
      new Option("--sort <key>", "order by").choices(["created", "priority", "runAt"]).default("created"),
    )
    .addOption(new Option("--order <order>", "direction").choices(["asc", "desc"]).default("asc"))
    .action((db: string, flags: ListFlags) => {
      const list = withQueue(db, flags.queue, (queue) =>
        queue.list({
          state: flags.state,
          type: flags.type,
          limit: flags.limit,
          offset: flags.offset,
          sortBy: flags.sort,
          order: flags.order,
        }),
      );
      if (flags.json) printJson({ ok: true, queue: flags.queue, jobs: list });
      else printText(list.length === 0 ? `no jobs in queue ${flags.queue} match` : jobsTable(list));
    });

  command(
    jobs,
    "stats",
    "count the jobs and their attempts in each state, the outboxes' messages, and the file's free pages",
  ).action((db: string, flags: Common) => {
    const { stats, storage, outboxes } = withQueue(db, flags.queue, (queue) => ({
      stats: queue.stats(),
      storage: storageStats(queue.store),
      outboxes: outboxCounts(queue.store),
    }));
    if (flags.json) {
      printJson({ ok: true, queue: flags.queue, ...stats, storage, outboxes });
      return;
    }
    const rows = JOB_STATES.map((s) => [s, String(stats[s]), String(stats.attempts[s])]);
    rows.push(
      ["total", String(stats.total), ""],
      ["average attempts", stats.averageAttempts.toFixed(2), ""],
      ["oldest due pending", stats.oldestPendingAgeMs > 0 ? ms(stats.oldestPendingAgeMs) : "-", ""],
    );
    const out = [table(["queue", flags.queue, "attempts"], rows)];
    if (Object.keys(outboxes).length > 0) out.push("", outboxesTable(outboxes));
    out.push("", `storage  ${describeStorage(storage)}`);
    printText(out.join("\n"));
  });

  command(
    jobs,
    "stuck",
    "list jobs running (even with a renewed lease) or waiting longer than a threshold, and running jobs whose lease expired",
  )
    .addOption(
      new Option("--older-than <duration>", "how long counts as stuck, e.g. 5m, 30s, 2h")
        .argParser(duration)
        .default(duration(DEFAULT_STUCK), DEFAULT_STUCK),
    )
    .action((db: string, flags: Common & { olderThan: number }) => {
      const { list, now } = withQueue(db, flags.queue, (queue) => ({
        list: queue.stuck({ olderThanMs: flags.olderThan }),
        now: queue.now(),
      }));
      const jobs = list.map((job) => ({ ...stuckFor(job, now), job }));
      if (flags.json) {
        printJson({ ok: true, queue: flags.queue, olderThanMs: flags.olderThan, stuck: jobs });
        return;
      }
      printText(
        jobs.length === 0
          ? `no job in queue ${flags.queue} has been running or waiting longer than ${ms(flags.olderThan)}`
          : table(
              ["ID", "STATE", "TYPE", "ATTEMPTS", "FOR", "WHY", "LEASE OWNER"],
              jobs.map(({ job, forMs, reason }) => [
                String(job.id),
                job.state,
                job.type,
                `${job.attempts}/${job.maxAttempts}`,
                ms(forMs),
                reason,
                job.leaseOwner ?? "-",
              ]),
            ),
      );
    });

  bulkOptions(
    command(jobs, "retry", "run a failed or cancelled job (or every one matching --state/--type) again"),
  )
    .argument("[id]", "the job's id", positiveInt)
    .action((db: string, id: number | undefined, flags: BulkFlags) => {
      if (id === undefined) return bulkJobs("retry", db, flags);
      const job = withQueue(
        db,
        flags.queue,
        (queue) => {
          const before = found(queue, id);
          if (!queue.retry(id)) {
            const state = queue.get(id)?.state ?? before.state;
            throw new TidewireError(
              `job ${id} is ${state}; only failed or cancelled jobs can be retried`,
              "ERR_JOB_STATE",
            );
          }
          return found(queue, id);
        },
        true,
      );
      if (flags.json) printJson({ ok: true, queue: flags.queue, job });
      else printText(`job ${id} (${job.type}) is pending again with ${job.maxAttempts} attempts`);
    });

  bulkOptions(
    command(jobs, "cancel", "cancel a pending or running job (or every one matching --state/--type)"),
  )
    .argument("[id]", "the job's id", positiveInt)
    .action((db: string, id: number | undefined, flags: BulkFlags) => {
      if (id === undefined) return bulkJobs("cancel", db, flags);
      const { job, was } = withQueue(
        db,
        flags.queue,
        (queue) => {
          const before = found(queue, id);
          if (!queue.cancel(id)) {
            const state = queue.get(id)?.state ?? before.state;
            throw new TidewireError(
              `job ${id} is ${state}; only pending or running jobs can be cancelled`,
              "ERR_JOB_STATE",
            );
          }
          return { job: found(queue, id), was: before.state };
        },
        true,
      );
      if (flags.json) printJson({ ok: true, queue: flags.queue, previousState: was, job });
      else if (was === "running")
        printText(
          `job ${id} cancelled; its handler's signal is aborted at the worker's next lease renewal, and its outcome will be dropped`,
        );
      else printText(`job ${id} cancelled`);
    });

  command(
    jobs,
    "cleanup",
    "delete finished jobs (completed, failed, cancelled) older than a retention window",
  )
    .addOption(
      new Option("--older-than <duration>", "retention window, e.g. 7d, 12h, 30m")
        .argParser(duration)
        .default(duration(DEFAULT_RETENTION), DEFAULT_RETENTION),
    )
    .action((db: string, flags: Common & { olderThan: number }) => {
      const removed = withQueue(
        db,
        flags.queue,
        (queue) => queue.cleanup({ olderThanMs: flags.olderThan }),
        true,
      );
      if (flags.json) printJson({ ok: true, queue: flags.queue, removed, olderThanMs: flags.olderThan });
      else
        printText(
          `removed ${removed} finished job${removed === 1 ? "" : "s"} older than ${ms(flags.olderThan)} from queue ${flags.queue}`,
        );
    });

  registerJobsUpdate(jobs);
  registerJobsSchedules(jobs);
}

/** Why `stuck` listed a job, and for how long it has been so. */
function stuckFor(job: Job, now: number): { reason: string; forMs: number } {
  if (job.state === "pending") return { reason: "waiting", forMs: Math.max(0, now - job.runAt) };
  const forMs = Math.max(0, now - (job.startedAt ?? now));
  if (job.leaseExpiresAt !== null && job.leaseExpiresAt < now) return { reason: "lease expired", forMs };
  return { reason: "running", forMs };
}

function jobsTable(list: Job[]): string {
  return table(
    ["ID", "STATE", "TYPE", "PRIORITY", "ATTEMPTS", "RUN AT", "CREATED", "LAST ERROR"],
    list.map((j) => [
      String(j.id),
      j.state,
      j.type,
      String(j.priority),
      `${j.attempts}/${j.maxAttempts}`,
      when(j.runAt),
      when(j.createdAt),
      oneLine(j.lastError ?? "", 60),
    ]),
  );
}

function when(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

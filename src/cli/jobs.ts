/**
 * `tidewire jobs <db> list|stats|retry|cancel|cleanup`: the queue of a database
 * file, seen and handled from a shell.
 *
 * Contract: the database must already exist (a typo in a path must not leave
 * a fresh empty database behind), so existence is checked before the store is
 * opened. A job that cannot be retried or cancelled in its current state is a
 * failure at run time (exit 1), with the state named; a malformed id or option
 * is a usage error (exit 2).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import ms from "ms";
import { StoreError, TidewireError } from "../errors.js";
import { Queue } from "../queue/queue.js";
import { JOB_STATES, type Job, type JobState, type SortBy } from "../queue/types.js";
import { openStore } from "../store.js";
import { duration, nonEmpty, nonNegativeInt, positiveInt, printJson, printText, table } from "./io.js";

interface Common {
  queue: string;
  json?: boolean;
}

interface ListFlags extends Common {
  state?: JobState;
  type?: string;
  limit?: number;
  offset?: number;
  sort: SortBy;
  order: "asc" | "desc";
}

const ACTIONS = ["list", "stats", "retry", "cancel", "cleanup"];
const DEFAULT_RETENTION = "7d";

export function registerJobs(program: Command): void {
  const jobs = commandGroup(program, "jobs", "inspect and manage the job queue in a database file", ACTIONS);

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

  command(jobs, "stats", "count the jobs in each state").action((db: string, flags: Common) => {
    const stats = withQueue(db, flags.queue, (queue) => queue.stats());
    if (flags.json) {
      printJson({ ok: true, queue: flags.queue, ...stats });
      return;
    }
    const rows = JOB_STATES.map((s) => [s, String(stats[s])]);
    rows.push(
      ["total", String(stats.total)],
      ["average attempts", stats.averageAttempts.toFixed(2)],
      ["oldest due pending", stats.oldestPendingAgeMs > 0 ? ms(stats.oldestPendingAgeMs) : "-"],
    );
    printText(table(["queue", flags.queue], rows));
  });

  command(jobs, "retry", "run a failed or cancelled job again, with a fresh set of attempts")
    .argument("<id>", "the job's id", positiveInt)
    .action((db: string, id: number, flags: Common) => {
      const job = withQueue(db, flags.queue, (queue) => {
        const before = found(queue, id);
        if (!queue.retry(id)) {
          const state = queue.get(id)?.state ?? before.state;
          throw new TidewireError(
            `job ${id} is ${state}; only failed or cancelled jobs can be retried`,
            "ERR_JOB_STATE",
          );
        }
        return found(queue, id);
      });
      if (flags.json) printJson({ ok: true, queue: flags.queue, job });
      else printText(`job ${id} (${job.type}) is pending again with ${job.maxAttempts} attempts`);
    });

  command(jobs, "cancel", "cancel a pending or running job")
    .argument("<id>", "the job's id", positiveInt)
    .action((db: string, id: number, flags: Common) => {
      const { job, was } = withQueue(db, flags.queue, (queue) => {
        const before = found(queue, id);
        if (!queue.cancel(id)) {
          const state = queue.get(id)?.state ?? before.state;
          throw new TidewireError(
            `job ${id} is ${state}; only pending or running jobs can be cancelled`,
            "ERR_JOB_STATE",
          );
        }
        return { job: found(queue, id), was: before.state };
      });
      if (flags.json) printJson({ ok: true, queue: flags.queue, previousState: was, job });
      else if (was === "running")
        printText(`job ${id} cancelled; its handler is not interrupted, but its outcome will be dropped`);
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
      const removed = withQueue(db, flags.queue, (queue) => queue.cleanup({ olderThanMs: flags.olderThan }));
      if (flags.json) printJson({ ok: true, queue: flags.queue, removed, olderThanMs: flags.olderThan });
      else
        printText(
          `removed ${removed} finished job${removed === 1 ? "" : "s"} older than ${ms(flags.olderThan)} from queue ${flags.queue}`,
        );
    });
}

/**
 * A command whose subcommands follow a database operand, `tidewire <name> <db>
 * <command>` (see jobsArgv): its help shows that order, and an unknown or
 * missing command is a usage error naming the ones there are.
 */
export function commandGroup(
  program: Command,
  name: string,
  description: string,
  actions: string[],
): Command {
  return program
    .command(name)
    .description(description)
    .usage("<db> <command> [options]")
    .argument("[db]", "the database file")
    .argument("[command]", `one of ${actions.join(", ")}`)
    .configureHelp({
      // Commander would print the subcommand before <db>; show the order the contract uses.
      commandUsage: (cmd) =>
        cmd.name() === name
          ? `tidewire ${name} ${cmd.usage()}`
          : `tidewire ${name} <db> ${cmd.name()} ${cmd.usage()}`,
      subcommandTerm: (cmd) => `${cmd.name()} ${cmd.usage()}`,
    })
    .action((db: string | undefined, action: string | undefined, _opts, cmd: Command) => {
      // Reached only when no known command followed <db> (see jobsArgv).
      if (db === undefined)
        cmd.error(`${name} needs a database file and a command; see tidewire ${name} --help`);
      if (action === undefined) cmd.error(`${name} ${db}: missing command, one of ${actions.join(", ")}`);
      cmd.error(`${name}: unknown command '${action}', expected one of ${actions.join(", ")}`);
    });
}

/**
 * The contract's word order, `jobs <db> list` (and `pins <db> add`, with
 * `group`), puts an operand before the subcommand, which commander cannot
 * dispatch. This moves the command word in front of <db> (`jobs list <db>`),
 * so each command keeps its own options and --help. Any other argv passes
 * through unchanged.
 */
export function jobsArgv(program: Command, args: string[], group = "jobs"): string[] {
  const at = args.findIndex((a) => !a.startsWith("-"));
  const jobs = program.commands.find((c) => c.name() === group);
  if (at < 0 || args[at] !== group || !jobs) return args;
  const takesValue = new Set<string>();
  for (const cmd of [jobs, ...jobs.commands]) {
    for (const o of cmd.options) {
      if (!o.required && !o.optional) continue;
      if (o.long) takesValue.add(o.long);
      if (o.short) takesValue.add(o.short);
    }
  }
  const operands: number[] = [];
  for (let i = at + 1; i < args.length && operands.length < 2; i++) {
    const arg = args[i] as string;
    if (arg === "--") break;
    if (arg.startsWith("-")) {
      if (takesValue.has(arg)) i++;
      continue;
    }
    operands.push(i);
  }
  const [dbAt, actionAt] = operands;
  if (dbAt === undefined || actionAt === undefined) return args;
  const names = jobs.commands.map((c) => c.name());
  if (names.includes(args[dbAt] as string) || !names.includes(args[actionAt] as string)) return args;
  const out = args.slice();
  const [action] = out.splice(actionAt, 1);
  out.splice(at + 1, 0, action as string);
  return out;
}

function command(jobs: Command, name: string, description: string): Command {
  return jobs
    .command(name)
    .description(description)
    .usage(name === "retry" || name === "cancel" ? "<id> [options]" : "[options]")
    .argument("<db>", "the database file (it must exist)")
    .addOption(new Option("--queue <name>", "the queue").argParser(nonEmpty).default("default"))
    .option("--json", "print one JSON document on stdout");
}

function withQueue<T>(db: string, queueName: string, fn: (queue: Queue) => T): T {
  const path = resolve(db);
  if (!existsSync(path)) throw new StoreError(`no database at ${path}`, "ERR_NO_DATABASE");
  const store = openStore(path);
  try {
    return fn(new Queue(store, queueName));
  } finally {
    store.close();
  }
}

function found(queue: Queue, id: number): Job {
  const job = queue.get(id);
  if (!job) throw new TidewireError(`no job ${id} in queue ${queue.name}`, "ERR_NO_JOB");
  return job;
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

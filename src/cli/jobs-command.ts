/**
 * The pieces every `tidewire jobs <verb>` shares: the command's shape (the
 * database argument, --queue, --json), opening the queue, finding a job.
 *
 * Contract: `withQueue` opens the file read-only unless the command changes
 * jobs, and always closes it; `found` fails at run time (exit 1) when the job
 * does not exist. Kept apart from jobs.ts so that the verbs living in their
 * own files (jobs-console.ts, jobs-schedules.ts) do not import the module
 * that registers them.
 */
import { type Command, Option } from "commander";
import { TidewireError } from "../errors.js";
import { Queue } from "../queue/queue.js";
import type { Job } from "../queue/types.js";
import { verb } from "./group.js";
import { nonEmpty, openDatabase } from "./io.js";

export interface Common {
  queue: string;
  json?: boolean;
}

/** A verb of `tidewire jobs`, `jobs <name> <db>`, with --queue and --json. */
export function command(jobs: Command, name: string, description: string): Command {
  return verb(jobs, name, description).addOption(
    new Option("--queue <name>", "the queue").argParser(nonEmpty).default("default"),
  );
}

/** Runs `fn` on the named queue; only commands that change jobs (`write`) open the file read-write. */
export function withQueue<T>(db: string, queueName: string, fn: (queue: Queue) => T, write = false): T {
  const store = openDatabase(db, write);
  try {
    return fn(new Queue(store, queueName));
  } finally {
    store.close();
  }
}

export function found(queue: Queue, id: number): Job {
  const job = queue.get(id);
  if (!job) throw new TidewireError(`no job ${id} in queue ${queue.name}`, "ERR_NO_JOB");
  return job;
}

/**
 * `tidewire sync <db> --remote <url>`: sync a replica with a hub.
 *
 * Contract: the database must exist. `--once` (the default) runs one full
 * cycle — everything pending is pushed, everything new is pulled, batch by
 * batch with cursors saved after each, so an interrupted run resumes — and
 * exits 0, or 1 when the hub cannot be reached or refuses (bad token,
 * bucket not allowed, another protocol version). `--watch` keeps syncing on
 * an interval, at once when the hub announces changes, backing off while it
 * is down, until SIGINT or SIGTERM, then stops cleanly and exits 0. A
 * progress line is drawn on stderr only when stderr is a terminal. With
 * --json, stdout carries one summary document and nothing else.
 */
import { type Command, Option } from "commander";
import { Replica } from "../replica/replica.js";
import { type CycleResult, type SyncDirection, SyncManager } from "../sync/sync-manager.js";
import { HttpTransport } from "../sync/transport-http.js";
import { duration, existingDatabase, nonEmpty, printJson, printText } from "./io.js";

interface SyncFlags {
  remote: string;
  token?: string;
  bucket?: string[];
  direction: SyncDirection;
  once?: boolean;
  watch?: boolean;
  interval: number;
  maxBackoff: number;
  json?: boolean;
}

export function registerSync(program: Command): void {
  program
    .command("sync")
    .description("sync a replica with a hub (tidewire serve): push local changes, pull the others'")
    .argument("<db>", "the replica's database file (it must exist)")
    .requiredOption("--remote <url>", "the hub's URL, e.g. http://127.0.0.1:7420")
    .addOption(new Option("--token <token>", "bearer token for the hub").env("TIDEWIRE_TOKEN"))
    .option(
      "--bucket <bucket>",
      "a bucket to sync (default: every bucket tracked here); repeatable",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), nonEmpty(v)],
    )
    .addOption(
      new Option("--direction <direction>", "push, pull or both")
        .choices(["push", "pull", "both"])
        .default("both"),
    )
    .addOption(new Option("--once", "one full cycle, then exit (the default)").conflicts("watch"))
    .addOption(new Option("--watch", "keep syncing until SIGINT or SIGTERM"))
    .addOption(
      new Option("--interval <duration>", "pause between cycles with --watch")
        .argParser(duration)
        .default(5000),
    )
    .addOption(
      new Option("--max-backoff <duration>", "longest pause after failures with --watch")
        .argParser(duration)
        .default(30_000),
    )
    .option("--json", "print one JSON summary on stdout")
    .action(async (db: string, flags: SyncFlags) => {
      const path = existingDatabase(db);
      const transport = new HttpTransport(flags.remote, { token: flags.token });
      const replica = Replica.open(path);
      try {
        const manager = new SyncManager(replica, transport, {
          direction: flags.direction,
          buckets: flags.bucket,
          intervalMs: Math.max(1, flags.interval),
          retry: {
            initialMs: Math.min(1000, Math.max(1, flags.maxBackoff)),
            maxMs: Math.max(1, flags.maxBackoff),
          },
        });
        const about = { ok: true, nodeId: replica.nodeId, remote: transport.peer, buckets: manager.buckets };
        if (flags.watch) {
          const summary = await watch(manager, flags);
          if (flags.json) printJson({ ...about, ...summary });
        } else {
          const summary = await once(manager, flags);
          if (flags.json) printJson({ ...about, ...summary });
          else printText(describe(summary));
        }
      } finally {
        await transport.close();
        replica.close();
      }
    });
}

async function once(manager: SyncManager, flags: SyncFlags): Promise<CycleResult> {
  const bar = process.stderr.isTTY && !flags.json ? progressLine() : null;
  try {
    return await manager.initialSync({ onProgress: bar?.update });
  } finally {
    bar?.done();
    await manager.stop();
  }
}

async function watch(manager: SyncManager, flags: SyncFlags) {
  const total = { cycles: 0, failures: 0, pushed: 0, pulled: 0, applied: 0 };
  manager.on("synced", (r) => {
    total.cycles++;
    total.pushed += r.pushed;
    total.pulled += r.pulled;
    total.applied += r.applied;
    if (!flags.json && r.pushed + r.pulled > 0) printText(describe(r));
  });
  manager.on("failed", (err, retryIn) => {
    total.failures++;
    process.stderr.write(
      `tidewire: sync failed: ${err.message}${retryIn === undefined ? "" : `; retrying in ${(retryIn / 1000).toFixed(1)} s`}\n`,
    );
  });
  manager.start();
  await new Promise<void>((done) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      done();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await manager.stop();
  return { ...total, lastSuccessAt: manager.status.lastSuccessAt ?? null };
}

function describe(r: CycleResult): string {
  return `pushed ${r.pushed}, pulled ${r.pulled} (${r.applied} applied) in ${Math.round(r.durationMs)} ms`;
}

/** One self-rewriting line on stderr: the hub does not say how much is left, so it counts and rates. */
function progressLine() {
  const started = performance.now();
  let drawn = false;
  return {
    update: (_batch: number, total: number, hasMore: boolean) => {
      const rate = total / Math.max(0.001, (performance.now() - started) / 1000);
      const spin = hasMore ? "|/-\\"[Math.floor(performance.now() / 120) % 4] : "done";
      process.stderr.write(
        `\r\x1b[Ksyncing: ${total.toLocaleString("en")} changes, ${Math.round(rate).toLocaleString("en")}/s ${spin}`,
      );
      drawn = true;
    },
    done: () => {
      if (drawn) process.stderr.write("\n");
    },
  };
}

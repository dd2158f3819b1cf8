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
 * progress bar is drawn on stderr only when stderr is a terminal. With
 * --json, stdout carries one summary document and nothing else.
 */
import { type Command, Option } from "commander";
import { Replica } from "../replica/replica.js";
import {
  type CycleResult,
  type SyncDirection,
  SyncManager,
  type SyncPosition,
} from "../sync/sync-manager.js";
import { HttpTransport } from "../sync/transport-http.js";
import { duration, existingDatabase, maxDriftOption, nonEmpty, printJson, printText } from "./io.js";

interface SyncFlags {
  remote: string;
  token?: string;
  bucket?: string[];
  direction: SyncDirection;
  once?: boolean;
  watch?: boolean;
  interval: number;
  maxBackoff: number;
  maxDrift?: number;
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
    .addOption(maxDriftOption())
    .option("--json", "print one JSON summary on stdout")
    .action(async (db: string, flags: SyncFlags) => {
      const path = existingDatabase(db);
      const transport = new HttpTransport(flags.remote, { token: flags.token });
      const replica = Replica.open(path, { maxDriftMs: flags.maxDrift });
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

const BAR_WIDTH = 24;

/**
 * A self-rewriting progress bar on stderr, one line per leg (push, then
 * pull): how far the leg's cursor has come from where it started to the head
 * of the log it reads, the changes moved, their rate and the time left. When
 * the head is not known (a hub without capability "head") it counts and rates
 * with a spinner instead. Cursors are sequence numbers with gaps where the log
 * was compacted, so the bar runs by position, not by count, and may jump.
 */
function progressLine() {
  let leg: { direction: string; started: number; moved: number } | null = null;
  let drawn = false;
  // Legs run back to back from the start: each began when the one before last reported.
  let last = performance.now();
  return {
    update: (batch: number, _total: number, hasMore: boolean, position: SyncPosition) => {
      const now = performance.now();
      if (leg?.direction !== position.direction) {
        if (drawn) process.stderr.write("\n");
        leg = { direction: position.direction, started: last, moved: 0 };
      }
      last = now;
      leg.moved += batch;
      const seconds = Math.max(0.001, (now - leg.started) / 1000);
      const rate = `${Math.round(leg.moved / seconds).toLocaleString("en")}/s`;
      const moved = `${leg.moved.toLocaleString("en")} changes`;
      const label = position.direction === "push" ? "pushing" : "pulling";
      const done = fraction(position, hasMore);
      let line: string;
      if (done === null) {
        const spin = hasMore ? "|/-\\"[Math.floor(now / 120) % 4] : "done";
        line = `${label}: ${moved}, ${rate} ${spin}`;
      } else {
        const filled = Math.round(done * BAR_WIDTH);
        const bar = `${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}`;
        // An estimate from the first percent or half second would only be noise.
        const eta = !hasMore
          ? "done"
          : done >= 0.01 && seconds >= 0.5
            ? `ETA ${Math.ceil((seconds * (1 - done)) / done)} s`
            : "";
        line = `${label} ${bar} ${Math.floor(done * 100)}% ${moved}, ${rate} ${eta}`.trimEnd();
      }
      process.stderr.write(`\r\x1b[K${line}`);
      drawn = true;
    },
    done: () => {
      if (drawn) process.stderr.write("\n");
    },
  };
}

/** How far a leg has come, 0 to 1, or null when its head is not known. */
function fraction(p: SyncPosition, hasMore: boolean): number | null {
  if (!hasMore) return 1;
  if (p.head === undefined) return null;
  const span = Number(BigInt(p.head) - BigInt(p.start));
  if (span <= 0) return null;
  return Math.min(1, Math.max(0, Number(BigInt(p.cursor) - BigInt(p.start)) / span));
}

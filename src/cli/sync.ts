/**
 * `tidewire sync <db> --remote <url>`: sync a replica with a hub.
 *
 * Contract: the database must exist. `--once` (the default) runs one full
 * cycle — everything pending is pushed, everything new is pulled, batch by
 * batch with cursors saved after each, so an interrupted run resumes — and
 * exits 0, or 1 when the hub cannot be reached or refuses, with a sentence
 * for each refusal of the handshake (no token or a wrong one, a bucket the
 * hub does not serve or the token may not use, another protocol version)
 * and, with --json, the hub's code. `--watch` exits 1 the same way when its
 * first handshake is refused, and waits (backing off) for a hub it cannot
 * reach yet; once the handshake is accepted it keeps syncing, pushing every
 * --push-interval and pulling every --pull-interval (both --interval unless
 * given), pulling at once when the hub announces changes, backing off while
 * it is down and warning on stderr after --warn-after-failures failures in a
 * row (and when it recovers), until SIGINT or SIGTERM, then stops cleanly
 * and exits 0. A progress bar is drawn on stderr only when stderr is a
 * terminal. With --json, stdout carries one summary document and nothing else.
 */
import { type Command, Option } from "commander";
import { TidewireError } from "../errors.js";
import { Replica } from "../replica/replica.js";
import { backoffDelay } from "../sync/failure-streak.js";
import { ProtocolError } from "../sync/protocol.js";
import {
  type CycleResult,
  type SyncDirection,
  SyncManager,
  type SyncPosition,
} from "../sync/sync-manager.js";
import { HubAuthError, HubBucketError, HubRefusedError } from "../sync/transport.js";
import { HttpTransport, TransportError } from "../sync/transports/http.js";
import {
  duration,
  existingDatabase,
  maxDriftOption,
  nonEmpty,
  nonNegativeInt,
  printJson,
  printText,
} from "./io.js";

interface SyncFlags {
  remote: string;
  token?: string;
  bucket?: string[];
  direction: SyncDirection;
  once?: boolean;
  watch?: boolean;
  interval: number;
  pushInterval?: number;
  pullInterval?: number;
  warnAfterFailures: number;
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
        .default(5000, "5s"),
    )
    .addOption(
      new Option(
        "--push-interval <duration>",
        "pause between pushes with --watch (default: --interval)",
      ).argParser(duration),
    )
    .addOption(
      new Option(
        "--pull-interval <duration>",
        "pause between pulls with --watch, besides the hub's live notices (default: --interval)",
      ).argParser(duration),
    )
    .addOption(
      new Option(
        "--warn-after-failures <n>",
        "warn on stderr after this many failed cycles in a row (0: never)",
      )
        .argParser(nonNegativeInt)
        .default(5),
    )
    .addOption(
      new Option("--max-backoff <duration>", "longest pause after failures with --watch")
        .argParser(duration)
        .default(30_000, "30s"),
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
          pushIntervalMs: flags.pushInterval === undefined ? undefined : Math.max(1, flags.pushInterval),
          pullIntervalMs: flags.pullInterval === undefined ? undefined : Math.max(1, flags.pullInterval),
          warnAfterFailures: flags.warnAfterFailures,
          retry: {
            initialMs: Math.min(1000, Math.max(1, flags.maxBackoff)),
            maxMs: Math.max(1, flags.maxBackoff),
          },
        });
        const about = { ok: true, nodeId: replica.nodeId, remote: transport.peer, buckets: manager.buckets };
        try {
          if (flags.watch) {
            const summary = await watch(manager, flags);
            if (flags.json) printJson({ ...about, ...summary });
          } else {
            const summary = await once(manager, flags);
            if (flags.json) printJson({ ...about, ...summary });
            else printText(describe(summary));
          }
        } catch (err) {
          throw explain(err, flags, transport.peer);
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
  const total = { cycles: 0, failures: 0, warnings: 0, pushed: 0, pulled: 0, applied: 0 };
  manager.on("synced", (r) => {
    total.cycles++;
    total.pushed += r.pushed;
    total.pulled += r.pulled;
    total.applied += r.applied;
    if (!flags.json && r.pushed + r.pulled > 0) printText(describe(r));
  });
  let starting = true;
  manager.on("failed", (err, retryIn) => {
    // A first handshake that failed: start() rejects with its error, told below.
    if (starting && retryIn === undefined) return;
    total.failures++;
    process.stderr.write(
      `tidewire: sync failed: ${err.message}${retryIn === undefined ? "" : `; retrying in ${(retryIn / 1000).toFixed(1)} s`}\n`,
    );
  });
  manager.on("warning", (err, failures, since) => {
    total.warnings++;
    process.stderr.write(
      `tidewire: warning: sync with ${manager.transport.peer} has failed ${failures} times in a row since ${new Date(since).toISOString()}: ${err.message}\n`,
    );
  });
  manager.on("recovered", (failures, downMs) => {
    process.stderr.write(
      `tidewire: sync with ${manager.transport.peer} recovered after ${failures} failed cycles over ${(downMs / 1000).toFixed(1)} s\n`,
    );
  });
  let signalled = false;
  const stopSignal = new Promise<void>((done) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      signalled = true;
      done();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  // A refused first handshake ends the run (the same request would be refused again); a hub that
  // cannot be reached yet is waited for, at the loop's own backoff, as the loop would.
  while (!signalled) {
    try {
      await manager.start();
      starting = false;
      break;
    } catch (err) {
      if (!transient(err)) {
        await manager.stop();
        throw err;
      }
      total.failures++;
      const delay = backoffDelay(manager.retry, manager.status.failures);
      process.stderr.write(
        `tidewire: sync failed: ${(err as Error).message}; retrying in ${(delay / 1000).toFixed(1)} s\n`,
      );
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([stopSignal, new Promise((r) => (timer = setTimeout(r, delay)))]);
      clearTimeout(timer);
    }
  }
  await stopSignal;
  await manager.stop();
  return { ...total, lastSuccessAt: manager.status.lastSuccessAt ?? null };
}

/**
 * A refused handshake in the words of the flags that fix it; the hub's code
 * stays the error's code (--json). Any other error is left as it is.
 */
function explain(err: unknown, flags: SyncFlags, hub: string): unknown {
  if (err instanceof HubAuthError) {
    return new TidewireError(
      flags.token === undefined
        ? `the hub at ${hub} requires a token: pass --token or set TIDEWIRE_TOKEN`
        : `the hub at ${hub} refused the token (--token or TIDEWIRE_TOKEN): it is not one the hub knows`,
      err.code,
    );
  }
  if (err instanceof HubBucketError) {
    const fix =
      err.code === "ERR_UNKNOWN_BUCKET"
        ? "sync only the buckets it serves (--bucket)"
        : "use a token for that bucket, or leave it out (--bucket)";
    return new TidewireError(`${hub} refused the handshake: ${err.message}; ${fix}`, err.code);
  }
  if (err instanceof ProtocolError && err.code === "ERR_PROTOCOL_VERSION") {
    const why = err.message.replace(/^the hub refused the handshake: /, "");
    return new TidewireError(
      `the hub at ${hub} speaks another protocol version (${why}); run versions of tidewire that share one`,
      err.code,
    );
  }
  return err;
}

/** A failure the next try may not meet: the hub out of reach, or a refusal it says is temporary. */
function transient(err: unknown): boolean {
  return err instanceof TransportError || (err instanceof HubRefusedError && !err.permanent);
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

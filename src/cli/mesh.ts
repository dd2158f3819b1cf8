/**
 * `tidewire mesh <db> --redis URL`: runs a replica as a member of a mesh over
 * Redis Streams until SIGINT or SIGTERM.
 *
 * Contract: the database must exist. The member publishes its own changes,
 * applies its peers', and logs peers found, gaps and refused entries as pino
 * lines (on stdout, or on stderr with --json, whose stdout carries only the
 * summary printed at exit: changes published, received, applied, gaps,
 * refused). A signal stops it cleanly (the batch in flight finishes, cursors
 * are flushed) and it exits 0. Members seen are kept in the peer registry
 * (shown by `tidewire status`), and one removed with `tidewire peers remove`
 * leaves the mesh with its cursors; Redis unreachable at start exits 1; a bad
 * option exits 2.
 */
import { type Command, Option } from "commander";
import { createLogger, LOG_LEVELS, type LogLevel } from "../log.js";
import { MeshMember } from "../mesh/mesh-member.js";
import { Peers } from "../peers/peers.js";
import { Replica } from "../replica/replica.js";
import { existingDatabase, nonEmpty, positiveInt, printJson } from "./io.js";

interface MeshFlags {
  redis: string;
  bucket?: string[];
  maxLen: number;
  prefix: string;
  logLevel: LogLevel;
  json?: boolean;
}

export function registerMesh(program: Command): void {
  program
    .command("mesh")
    .description("sync a replica with its peers through Redis Streams, with no hub, until SIGINT or SIGTERM")
    .argument("<db>", "the replica's database file (it must exist)")
    .requiredOption("--redis <url>", "Redis URL, e.g. redis://127.0.0.1:6379/0")
    .option(
      "--bucket <bucket>",
      "a bucket to sync (default: every bucket tracked here); repeatable",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), nonEmpty(v)],
    )
    .addOption(
      new Option("--max-len <n>", "approximate length each stream is trimmed to, in entries")
        .argParser(positiveInt)
        .default(100_000),
    )
    .option("--prefix <prefix>", "first part of every Redis key", "tidewire")
    .addOption(
      new Option("--log-level <level>", "least severe level logged (debug with --verbose)")
        .choices(LOG_LEVELS)
        .default("info"),
    )
    .option("--json", "print one JSON summary on stdout at exit (logs go to stderr)")
    .action(async (db: string, flags: MeshFlags, cmd: Command) => {
      const path = existingDatabase(db);
      const verbose = cmd.optsWithGlobals().verbose === true;
      const level = verbose && cmd.getOptionValueSource("logLevel") === "default" ? "debug" : flags.logLevel;
      const { pino } = await import("pino");
      const logger = createLogger({
        level,
        destination: flags.json ? pino.destination({ dest: 2, sync: true }) : undefined,
      });
      const replica = Replica.open(path);
      try {
        const mesh = new MeshMember(replica, {
          redis: flags.redis,
          buckets: flags.bucket,
          maxLen: flags.maxLen,
          prefix: flags.prefix,
          logger,
          // Members show in `tidewire status`; `tidewire peers remove` takes one out of the mesh.
          peers: new Peers(replica.store),
        });
        await mesh.start();
        await untilSignal();
        await mesh.stop();
        const { counts } = mesh.status;
        if (flags.json) printJson({ ok: true, nodeId: replica.nodeId, buckets: mesh.buckets, ...counts });
      } finally {
        replica.close();
      }
    });
}

function untilSignal(): Promise<void> {
  return new Promise<void>((done) => {
    // A ref'd handle: with only Redis sockets left, Node could decide there is nothing to wait for.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      clearInterval(keepAlive);
      done();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

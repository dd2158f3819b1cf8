/**
 * `tidewire remote push <db> --target URL [--once | --interval 60s]
 * [--direction push|pull|both] [--resync] [--with-views] [--all-tables] [--keep-history N]
 * [--pg-type TABLE.COLUMN=TYPE ...] [--d1-local | --d1-remote] [--d1-config FILE] [--json]`
 * and `tidewire remote pull <db> --target URL [--once | --interval 60s] [--json]`:
 * keep a database's tracked tables in step with a remote SQL store.
 *
 * Contract: the database must exist and track tables. --once (the default)
 * checkpoints the WAL, runs one cycle and exits 0, or 1 when the target
 * failed (a push payload stays in the outbox for the next run; a pull's
 * cursor stays). --interval runs until SIGINT/SIGTERM, then stops cleanly
 * after the cycle in flight and exits 0; an interval below 1 s is clamped
 * to 1 s with a warning on stderr. --interval takes a duration (60s, 5m); a
 * bare number is a usage error. `remote push` pushes only unless --direction
 * says otherwise (pulling installs capture triggers on the target, which a
 * script that only mirrors did not ask for); `remote pull` pulls only.
 * --json prints one document: the cycle's result (a push alone keeps the
 * push's own shape; otherwise `{ direction, pull, push }`), or with
 * --interval a summary of the cycles when stopped. A full push to
 * PostgreSQL that created a column with another type than its declaration
 * maps to says so on stderr (and in the JSON document's `fallbacks`); an
 * index or view the target cannot take, or a virtual table, is a warning on
 * stderr too (`warnings`). The D1 flags are --d1-local, --d1-remote and
 * --d1-config (wrangler's own --local, --remote and --config): `--remote`
 * means a hub's URL in `tidewire sync`. `tidewire remote add|list|remove`
 * (remote-targets.ts) register targets the daemon keeps in sync.
 */
import { type Command, InvalidArgumentError as UsageError } from "commander";
import { StoreError } from "../errors.js";
import { DIRECTIONS } from "../remote/push-options.js";
import {
  type PullResult,
  type PushResult,
  RemoteSync,
  type SyncDirection,
  type SyncResult,
} from "../remote/remote-sync.js";
import { Replica } from "../replica/replica.js";
import { trackedTableNames } from "../replica/report.js";
import { openStore } from "../store.js";
import { commandGroup, verb } from "./group.js";
import { duration, existingDatabase, nonNegativeInt, positiveInt, printJson, printText } from "./io.js";
import { registerRemoteTargets } from "./remote-targets.js";

const TRACKING = "the database file (it must exist and track tables)";

interface PushFlags {
  target: string;
  once?: boolean;
  interval?: number;
  direction?: SyncDirection;
  resync?: boolean;
  withViews?: boolean;
  allTables?: boolean;
  keepHistory?: number;
  batchSize?: number;
  d1Local?: boolean;
  d1Remote?: boolean;
  d1Config?: string;
  pgType?: Record<string, string>;
  json?: boolean;
}

/** `--pg-type table.column=TYPE`, repeatable; the type is checked against the grammar by RemoteSync. */
function pgType(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new UsageError("Expected table.column=TYPE.");
  const column = value.slice(0, eq);
  if (Object.hasOwn(previous, column)) throw new UsageError(`${column} is given twice.`);
  return { ...previous, [column]: value.slice(eq + 1) };
}

function direction(value: string): SyncDirection {
  if (!DIRECTIONS.includes(value as SyncDirection)) throw new UsageError("Expected push, pull or both.");
  return value as SyncDirection;
}

export function registerRemote(program: Command): void {
  const remote = commandGroup(
    program,
    "remote",
    "keep a database in step with remote SQL stores: push or pull once or on an interval, or register targets for the daemon",
  );
  const push = verb(
    remote,
    "push",
    "push tracked tables to a SQLite file, PostgreSQL, libSQL or Cloudflare D1",
    TRACKING,
  )
    .option("--direction <direction>", "push, pull (the target's edits come back) or both", direction, "push")
    .option("--resync", "drop the target's copies and push everything again")
    .option("--with-views", "a full push also creates the database's views (PostgreSQL: those it can read)")
    .option(
      "--all-tables",
      "a full push also copies the tables nobody tracks (refreshed only by full pushes, e.g. --resync)",
    )
    .option("--keep-history <n>", "sync history rows the target keeps, 0 for all", nonNegativeInt, 1000)
    .option(
      "--pg-type <table.column=TYPE>",
      "postgres: create this column with TYPE instead of the mapped type (repeatable); TYPE is one of bigint, integer, smallint, double precision, numeric[(p,s)], text, varchar(n), boolean, date, time, timestamp, timestamptz, json, jsonb, uuid, bytea, any",
      pgType,
    );
  common(push, "push");
  const pull = verb(
    remote,
    "pull",
    "pull the edits made directly on a SQLite file, PostgreSQL, libSQL or Cloudflare D1 target into the database",
    TRACKING,
  );
  common(pull, "pull");
  registerRemoteTargets(remote);
}

/** The options both verbs take, and the action, which runs one verb. */
function common(cmd: Command, verb: "push" | "pull"): void {
  // A conflict between options is a usage error, printed by commander like its own.
  const usage = (message: string): never => cmd.error(message, { exitCode: 2, code: "commander.usage" });
  cmd
    .requiredOption("--target <url>", "sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME")
    .option("--once", `${verb} once and exit (the default)`)
    .option("--interval <duration>", `${verb} every DURATION (60s, 5m) until stopped`, duration)
    .option("--batch-size <n>", "changes per payload (push) or per batch read (pull)", positiveInt, 1000)
    .option("--d1-local", "d1: use wrangler's local D1 (the default)")
    .option("--d1-remote", "d1: use the D1 database on Cloudflare (wrangler's --remote)")
    .option("--d1-config <file>", "d1: the wrangler configuration file")
    .action(async (db: string, flags: PushFlags) => {
      if (flags.once && flags.interval !== undefined) usage("--once and --interval exclude each other");
      if (flags.d1Local && flags.d1Remote) usage("--d1-local and --d1-remote exclude each other");
      const isD1 = flags.target.startsWith("d1:");
      if (!isD1 && (flags.d1Local || flags.d1Remote || flags.d1Config !== undefined)) {
        usage("--d1-local, --d1-remote and --d1-config apply to d1:NAME targets only");
      }
      const path = existingDatabase(db);
      refuseUntracked(path);
      const d1 = isD1 ? { local: flags.d1Local, remote: flags.d1Remote, config: flags.d1Config } : undefined;
      const replica = Replica.open(path);
      let sync: RemoteSync;
      try {
        sync = new RemoteSync(replica, {
          target: flags.target,
          direction: verb === "pull" ? "pull" : flags.direction,
          d1,
          keepHistory: flags.keepHistory,
          batchSize: flags.batchSize,
          pgTypes: flags.pgType,
          withViews: flags.withViews === true,
          allTables: flags.allTables === true,
          onProgress:
            flags.json || !process.stderr.isTTY
              ? undefined
              : (p) =>
                  process.stderr.write(
                    `\r${p.table}: ${p.rows}/${p.total} rows${p.rows >= p.total ? "\n" : ""}`,
                  ),
        });
      } catch (err) {
        replica.close();
        throw err;
      }
      try {
        if (flags.interval === undefined) await once(sync, replica, flags);
        else await loop(sync, flags.interval / 1000, flags);
      } finally {
        await sync.close();
        replica.close();
      }
    });
}

/** Checked read-only first, so a file that tracks nothing is left exactly as it was. */
function refuseUntracked(path: string): void {
  const store = openStore(path, { readonly: true });
  try {
    if ((trackedTableNames(store)?.length ?? 0) === 0) {
      throw new StoreError(
        `${path} tracks no tables; track some first with tidewire init <db> --table <table>`,
        "ERR_NOTHING_TRACKED",
      );
    }
  } finally {
    store.close();
  }
}

async function once(sync: RemoteSync, replica: Replica, flags: PushFlags): Promise<void> {
  replica.store.checkpoint();
  const r = await sync.sync({ resync: flags.resync });
  if (!flags.json) report(r);
  else printJson({ ok: true, ...shape(r) });
}

async function loop(sync: RemoteSync, intervalSeconds: number, flags: PushFlags): Promise<void> {
  const cycles = { ok: 0, failed: 0 };
  let last: object | null = null;
  let lastError: string | null = null;
  await new Promise<void>((done) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      void sync.stop().then(done);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    sync.start({
      intervalSeconds,
      resync: flags.resync,
      onWarning: (m) => process.stderr.write(`tidewire: warning: ${m}\n`),
      onCycle: (r, err) => {
        if (r) {
          cycles.ok++;
          last = shape(r);
          if (!flags.json) report(r);
        } else {
          cycles.failed++;
          lastError = err?.message ?? "unknown error";
          process.stderr.write(`tidewire: ${lastError}\n`);
        }
      },
    });
  });
  if (flags.json) printJson({ ok: true, cycles, last, lastError });
}

/** A push alone keeps the document it always had; a pull alone is its own; both are side by side. */
function shape(r: SyncResult): object {
  if (r.direction === "push" && r.push) return r.push;
  if (r.direction === "pull" && r.pull) return r.pull;
  return { target: r.target, direction: r.direction, pull: r.pull, push: r.push };
}

function report(r: SyncResult): void {
  if (r.pull) printText(describePull(r.pull));
  if (r.push) {
    warnFallbacks(r.push);
    printText(describe(r.push));
  }
}

function describePull(r: PullResult): string {
  const q = r.quarantined ? `, ${r.quarantined} quarantined (see tidewire conflicts list)` : "";
  const skipped = r.skipped ? `, ${r.skipped} passed over` : "";
  return `pull from ${r.target}: ${r.entries} entries, ${r.applied} of ${r.changes} changes applied${q}${skipped} (${Math.round(r.durationMs)} ms); cursor ${r.cursor}`;
}

function warnFallbacks(r: PushResult): void {
  for (const w of r.warnings) process.stderr.write(`tidewire: warning: ${w}\n`);
  for (const f of r.fallbacks) {
    process.stderr.write(
      `tidewire: warning: ${f.table}.${f.column} (declared ${JSON.stringify(f.declared)}) was created as ${f.type}, not ${f.mapped}: it holds the ${f.value}; choose with --pg-type ${f.table}.${f.column}=TYPE\n`,
    );
  }
}

function describe(r: PushResult): string {
  const dup = r.duplicates ? `, ${r.duplicates} already applied` : "";
  const retried = r.retried ? `, ${r.retried} retried from the outbox` : "";
  return `${r.mode} push to ${r.target}: ${r.mutations} rows in ${r.payloads} payloads${dup}${retried} (${Math.round(r.durationMs)} ms); cursor ${r.cursor}`;
}

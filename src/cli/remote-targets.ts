/**
 * `tidewire remote add|list|remove <db> [url|id]`: the remote targets a
 * database's daemon keeps in sync (src/remote/registry.ts), seen and edited
 * from a shell.
 *
 * Contract: the database must already be a tidewire file (a typo in a path
 * leaves nothing behind). A target's secrets (password, authToken) are stored
 * and never printed: every output shows the URL without them. A bad URL, id,
 * interval, direction or filter, or a target or id already registered, is a
 * usage error (exit 2) that changes nothing; removing an id that is not there
 * is a failure at run time (exit 1). A running daemon picks the change up at
 * its next scan (`--remote-scan` of serve), without a restart.
 */
import { type Command, Option, InvalidArgumentError as UsageError } from "commander";
import ms from "ms";
import { TidewireError } from "../errors.js";
import { DIRECTIONS, type Direction, publicRemote, type RemoteStatus, Remotes } from "../remote/registry.js";
import { verb } from "./group.js";
import { collect, openDatabase, positiveDuration, printJson, printText, table } from "./io.js";

interface Common {
  json?: boolean;
}

interface AddFlags extends Common {
  id?: string;
  interval: number;
  direction: Direction;
  tables?: string[];
  bucket?: string[];
  d1Local?: boolean;
  d1Remote?: boolean;
  d1Config?: string;
}

/** Registers add, list and remove under `tidewire remote` (beside push and pull). */
export function registerRemoteTargets(remote: Command): void {
  verb(remote, "add", "register a remote target for the daemon (tidewire serve) to keep in sync")
    .argument("<url>", "sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME")
    .option("--id <id>", "a short stable name for it (default: derived from the URL)")
    .addOption(
      new Option("--interval <duration>", "how often the daemon syncs it, e.g. 30s, 5m")
        .argParser(positiveDuration)
        .default(60_000, "60s"),
    )
    .addOption(
      new Option("--direction <direction>", "push, pull or both").choices(DIRECTIONS).default("both"),
    )
    .option("--tables <names>", "only these tracked tables, comma-separated (repeatable)", names)
    .option("--bucket <name>", "only the tables of this bucket (repeatable)", collect)
    .addOption(new Option("--d1-local", "d1: wrangler's local D1 (the default)").conflicts("d1Remote"))
    .option("--d1-remote", "d1: the D1 database on Cloudflare (wrangler's --remote)")
    .option("--d1-config <file>", "d1: the wrangler configuration file (required for d1:NAME)")
    .action((db: string, url: string, flags: AddFlags, cmd: Command) => {
      const isD1 = url.startsWith("d1:");
      // A conflict between options is a usage error, printed by commander like its own.
      if (!isD1 && (flags.d1Local || flags.d1Remote || flags.d1Config !== undefined))
        cmd.error("error: --d1-local, --d1-remote and --d1-config apply to d1:NAME targets only", {
          exitCode: 2,
          code: "commander.usage",
        });
      const added = withRemotes(db, (r) => {
        const one = r.add({
          url,
          id: flags.id,
          intervalMs: flags.interval,
          direction: flags.direction,
          tables: flags.tables,
          buckets: flags.bucket,
          d1: isD1 ? { local: flags.d1Local, remote: flags.d1Remote, config: flags.d1Config } : undefined,
        });
        return publicRemote(one, 0);
      });
      if (flags.json) printJson({ ok: true, remote: added });
      else
        printText(
          `remote ${added.id}: ${added.target} (${added.backend}), ${added.direction} every ${ms(added.intervalMs)}${added.tables ? `, tables ${added.tables.join(", ")}` : ""}`,
        );
    });

  verb(remote, "list", "list the registered remote targets with their last sync and error").action(
    (db: string, flags: Common) => {
      const list = withRemotes(db, (r) => r.status());
      if (flags.json) printJson({ ok: true, remotes: list });
      else printText(list.length === 0 ? "no remote targets" : remotesTable(list));
    },
  );

  verb(remote, "remove", "unregister a remote target and delete its cursor and spooled payloads")
    .argument("<id>", "the target's id (see remote list)")
    .action((db: string, id: string, flags: Common) => {
      const removed = withRemotes(db, (r) => r.remove(id));
      if (!removed) throw new TidewireError(`no remote target ${id}`, "ERR_NO_REMOTE");
      if (flags.json) printJson({ ok: true, removed: id });
      else printText(`remote ${id} removed, with its cursor`);
    });
}

/** The targets as a table, for `remote list` and `tidewire status`. */
export function remotesTable(list: RemoteStatus[]): string {
  const when = (t: number | null) => (t === null ? "never" : `${new Date(t).toISOString().slice(0, 19)}Z`);
  return table(
    ["ID", "TARGET", "DIRECTION", "EVERY", "LAST SUCCESS", "PENDING", "LAST ERROR"],
    list.map((r) => [
      r.id,
      r.target,
      r.paused ? `${r.direction} (paused)` : r.direction,
      ms(r.intervalMs),
      when(r.lastSuccessAt),
      String(r.pending),
      // An error older than the last success is history: shown only while it is the latest outcome.
      r.lastError !== null && (r.lastSuccessAt === null || (r.lastErrorAt ?? 0) > r.lastSuccessAt)
        ? r.lastError
        : "",
    ]),
  );
}

function withRemotes<T>(db: string, fn: (remotes: Remotes) => T): T {
  // Read-write even to list: a file from before the registry gets its table (migration 13).
  const store = openDatabase(db, true);
  try {
    return fn(new Remotes(store));
  } finally {
    store.close();
  }
}

function names(value: string, previous: string[] = []): string[] {
  const list = value.split(",").map((s) => s.trim());
  if (list.some((s) => s === "")) throw new UsageError("Expected table names separated by commas.");
  return [...previous, ...list];
}

/**
 * `tidewire init <db> --table <table>[=<bucket>] ...`: track tables for sync.
 *
 * Contract: the database must exist (it holds the tables to track). Every
 * table is tracked in one transaction: one that cannot be (no such table, no
 * explicit PRIMARY KEY) fails the command (exit 1) and leaves every table as
 * it was. Running it again is harmless; schema changes need no re-run
 * (capture follows them by itself, src/replica/evolve.ts).
 *
 * `tidewire untrack <db> --table <table> ...`: stop capturing tables, in one
 * transaction: their triggers are dropped and their log entries forgotten
 * (writes staged before are logged first). A table that is not tracked fails
 * the command (exit 1) and untracks none.
 */
import { type Command, InvalidArgumentError as UsageError } from "commander";
import { TidewireError } from "../errors.js";
import { Replica } from "../replica/replica.js";
import { readTable } from "../replica/schema.js";
import { DEFAULT_BUCKET, type TrackedTableInfo } from "../replica/track.js";
import { existingDatabase, printJson, printText } from "./io.js";

interface TableSpec {
  table: string;
  bucket: string;
}

interface InitFlags {
  table: TableSpec[];
  json?: boolean;
}

/** `items` or `items=catalog`: the table, and its bucket (default "default"). */
export function tableSpec(value: string, previous: TableSpec[] | undefined): TableSpec[] {
  const at = value.indexOf("=");
  const table = at < 0 ? value : value.slice(0, at);
  const bucket = at < 0 ? DEFAULT_BUCKET : value.slice(at + 1);
  if (table.trim() === "") throw new UsageError("Expected a table name, as table or table=bucket.");
  if (bucket.trim() === "") throw new UsageError(`Expected a bucket name after "${table}=".`);
  return [...(previous ?? []), { table, bucket }];
}

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("track tables: capture every write to them, from any SQLite client, for sync")
    .argument("<db>", "the database file (it must exist)")
    .requiredOption(
      "--table <table[=bucket]>",
      "a table to track, in a bucket (default: default); repeatable",
      tableSpec,
    )
    .option("--json", "print one JSON document on stdout")
    .action((db: string, flags: InitFlags) => {
      const path = existingDatabase(db);
      const replica = Replica.open(path);
      let tracked: TrackedTableInfo[];
      let warnings: string[];
      try {
        tracked = replica.store.write(
          () => flags.table.map((s) => replica.track(s.table, { bucket: s.bucket })),
          "replica.track",
        );
        warnings = keyWarnings(replica, tracked);
      } finally {
        replica.close();
      }
      for (const w of warnings) process.stderr.write(`tidewire: warning: ${w}\n`);
      if (flags.json) {
        printJson({ ok: true, nodeId: replica.nodeId, tables: tracked, warnings });
        return;
      }
      const lines = tracked.map(
        (t) =>
          `tracking ${t.table} in bucket ${t.bucket}: key (${t.key.join(", ")}), ${t.columns.length} other column${t.columns.length === 1 ? "" : "s"}`,
      );
      printText([`node ${replica.nodeId}`, ...lines].join("\n"));
    });
}

/**
 * Tables whose key SQLite fills (an INTEGER PRIMARY KEY, AUTOINCREMENT or
 * not): two replicas inserting at once pick the same id, and one row
 * replaces the other (recorded as a conflict, but still not what the app meant).
 */
function keyWarnings(replica: Replica, tracked: TrackedTableInfo[]): string[] {
  const out: string[] = [];
  for (const t of tracked) {
    if (!readTable(replica.store.db, t.table).rowidAlias) continue;
    out.push(
      `table "${t.table}" has an INTEGER PRIMARY KEY ("${t.key[0]}") that SQLite fills with the next number: rows inserted at once on two replicas get the same id, and the later insert replaces the other (kept in tidewire conflicts). Give such rows ids no other replica picks: text ids (UUID, ULID), or a composite key with the node (see docs/architecture.md, "Keys on replicas").`,
    );
  }
  return out;
}

function collectTable(value: string, previous: string[] | undefined): string[] {
  if (value.trim() === "") throw new UsageError("Expected a table name.");
  return [...(previous ?? []), value];
}

export function registerUntrack(program: Command): void {
  program
    .command("untrack")
    .description("stop tracking tables: drop their capture triggers and forget their change log")
    .argument("<db>", "the database file (it must exist)")
    .requiredOption("--table <table>", "a tracked table; repeatable", collectTable)
    .option("--json", "print one JSON document on stdout")
    .action((db: string, flags: { table: string[]; json?: boolean }) => {
      const path = existingDatabase(db);
      const replica = Replica.open(path);
      try {
        replica.store.write(() => {
          for (const table of flags.table) {
            if (!replica.untrack(table))
              throw new TidewireError(`table "${table}" is not tracked in ${db}`, "ERR_NOT_TRACKED");
          }
        }, "replica.track");
      } finally {
        replica.close();
      }
      if (flags.json) printJson({ ok: true, nodeId: replica.nodeId, untracked: flags.table });
      else printText(flags.table.map((t) => `untracked ${t}`).join("\n"));
    });
}

/**
 * `tidewire conflicts list|show|restore <db> [id]`: what resolution rules
 * overrode on this replica, and the changes kept aside because they could not
 * be applied here (yet).
 *
 * Contract: `list` and `show` read only (the file is never created or
 * migrated by them); `restore` puts a conflict's lost version back as a local
 * write, which syncs like any other, or tries a quarantined change again. A
 * restore the schema refuses writes nothing and says why and what to do
 * (exit 1); an unknown id is a usage error (exit 2).
 */
import type { Command } from "commander";
import { InvalidArgumentError } from "../errors.js";
import {
  type Conflict,
  type ConflictCounts,
  type Conflicts,
  isQuarantine,
  type QuarantinedChange,
} from "../replica/conflicts.js";
import { Replica } from "../replica/replica.js";
import { conflictsOf } from "../replica/report.js";
import { openStore } from "../store.js";
import { commandGroup, verb } from "./group.js";
import { existingDatabase, positiveInt, printJson, printText, table } from "./io.js";

export function registerConflicts(program: Command): void {
  const group = commandGroup(
    program,
    "conflicts",
    "list, inspect and restore what conflict rules overrode, and changes kept in quarantine",
  );
  verb(group, "list", "list conflicts and quarantined changes, newest first")
    .option("--limit <n>", "at most this many (default 100)", positiveInt)
    .action((db: string, flags: { limit?: number; json?: boolean }) => {
      const { list, counts } = read(
        db,
        (c) => ({ list: c.list({ limit: flags.limit ?? 100 }), counts: c.counts() }),
        {
          list: { conflicts: [], quarantined: [] },
          counts: { unique: 0, insert: 0, orphan: 0, held: 0, failed: 0 },
        },
      );
      if (flags.json) {
        printJson({ ok: true, counts, ...list });
        return;
      }
      printText(renderList(list.conflicts, list.quarantined, counts));
    });
  verb(group, "show", "show one conflict, with both versions, or one quarantined change")
    .argument("<id>", "the conflict's id (see conflicts list)", positiveInt)
    .action((db: string, id: number, flags: { json?: boolean }) => {
      const found = read(db, (c) => c.get(id), null);
      if (!found) throw usage(id);
      if (flags.json) printJson({ ok: true, ...found });
      else printText(JSON.stringify(found, null, 2));
    });
  verb(group, "restore", "put a conflict's lost version back as a local write, or retry a quarantined change")
    .argument("<id>", "the conflict's id (see conflicts list)", positiveInt)
    .option(
      "--replace",
      "delete the rows that hold the lost version's unique values first (each is recorded)",
    )
    .action((db: string, id: number, flags: { replace?: boolean; json?: boolean }) => {
      const replica = Replica.open(existingDatabase(db));
      let result: ReturnType<Replica["restoreConflict"]>;
      try {
        if (!replica.conflict(id)) throw usage(id);
        result = replica.restoreConflict(id, { replace: flags.replace === true });
      } finally {
        replica.close();
      }
      if (flags.json) printJson({ ok: result.restored, ...result });
      else if (result.restored) printText(`restored conflict ${id}`);
      else printText(`conflict ${id} is still quarantined: ${result.reason}`);
      if (!result.restored) process.exitCode = 1;
    });
}

/** Reads a database as it is: one from before migration 9 (or not a replica) has no conflicts, `none`. */
function read<T>(db: string, fn: (c: Conflicts) => T, none: T): T {
  const store = openStore(existingDatabase(db), { readonly: true });
  try {
    const conflicts = conflictsOf(store);
    return conflicts ? fn(conflicts) : none;
  } finally {
    store.close();
  }
}

function usage(id: number): Error {
  return new InvalidArgumentError("id", `there is no conflict ${id}; see tidewire conflicts list <db>`);
}

function renderList(conflicts: Conflict[], quarantined: QuarantinedChange[], counts: ConflictCounts): string {
  const out: string[] = [
    `conflicts  ${counts.unique} unique, ${counts.insert} insert, ${counts.orphan} orphan; quarantined ${counts.held} held, ${counts.failed} failed`,
  ];
  const rows = [...conflicts, ...quarantined]
    .sort((a, b) => b.id - a.id)
    .map((c) => [
      String(c.id),
      c.kind,
      c.table,
      JSON.stringify(c.pk),
      new Date(c.at).toISOString(),
      isQuarantine(c.kind) ? "" : (c as Conflict).restoredAt ? "restored" : "",
      c.reason,
    ]);
  if (rows.length) out.push(table(["ID", "KIND", "TABLE", "KEY", "AT", "STATE", "REASON"], rows));
  return out.join("\n");
}

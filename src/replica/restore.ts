/**
 * Restore: puts a conflict's lost version of a row back, as a local write.
 *
 * Contract: `restoreVersion` writes the lost version's columns (those the
 * table still has) at its key — an UPDATE when a row holds the key, else an
 * INSERT — with capture on, so the restore is captured and synced like any
 * write of the user's, with a fresh clock that beats what overrode it. When
 * the schema refuses it (most often: the row that won still holds a unique
 * value), nothing is written and the error says which constraint and what
 * to do; with `replace`, the rows that hold the version's unique values are
 * deleted first (captured too), and each is returned so the caller records it.
 * `restoreConflict` does that for one conflict by id, recording each deleted
 * row as a conflict of its own, and tries a quarantined change again instead;
 * the caller runs it in one write transaction, staged writes ingested first.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import type { ApplyOptions, ApplyResult } from "./apply.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import {
  type Conflict,
  type Conflicts,
  isQuarantine,
  type QuarantinedChange,
  type RowVersion,
} from "./conflicts.js";
import { versionOf } from "./merge.js";
import { columnOf, rowsOf, uniqueIndexes } from "./rows.js";
import { quoteIdent } from "./schema.js";
import { fromWire, type SqlValue } from "./values.js";

export class RestoreRefusedError extends TidewireError {
  constructor(message: string) {
    super(message, "ERR_RESTORE_REFUSED");
    this.name = "RestoreRefusedError";
  }
}

/** A row `replace` deleted to make room, with its values. */
export interface Displaced {
  parts: SqlValue[];
  values: Map<string, SqlValue>;
  index: string;
}

export function restoreVersion(
  db: Database.Database,
  t: TrackedTable,
  version: RowVersion,
  what: string,
  replace: boolean,
): Displaced[] {
  const parts = version.pk.map((v) => fromWire(v));
  const names = Object.keys(version.columns).filter((c) => t.columnSet.has(c));
  const values = names.map((c) => fromWire(version.columns[c]));
  const displaced = replace
    ? displace(db, t, parts, new Map(names.map((c, i) => [c, values[i] as SqlValue])))
    : [];
  try {
    const rows = rowsOf(db, t);
    if (names.length === 0 || !rows.update(names, parts, values)) {
      const cols = [...t.pk, ...names].map(quoteIdent);
      db.prepare(
        `INSERT INTO ${quoteIdent(t.name)} (${cols.join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`,
      ).run(...parts, ...values);
    }
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    if (!code.startsWith("SQLITE_CONSTRAINT") && code !== "SQLITE_MISMATCH") throw err;
    const hint =
      code === "SQLITE_CONSTRAINT_UNIQUE"
        ? "; another row holds that value now: change or delete it first, or restore with --replace"
        : "";
    throw new RestoreRefusedError(
      `${what} cannot be restored: ${(err as Error).message}${hint}; nothing was written`,
    );
  }
  return displaced;
}

/** What restoring a conflict needs of the replica. */
export interface RestoreContext {
  db: Database.Database;
  catalog: Catalog;
  conflicts: Conflicts;
  nodeId: string;
  apply(changes: unknown[], options: ApplyOptions): ApplyResult;
  /** The clock now, for the conflicts `replace` records. */
  now(): string;
}

export interface RestoreResult {
  id: number;
  restored: boolean;
  reason?: string;
}

export function restoreConflict(r: RestoreContext, id: number, replace: boolean): RestoreResult {
  const c = r.conflicts.get(id);
  if (!c) throw new InvalidArgumentError("id", `there is no conflict ${id}`);
  if (isQuarantine(c.kind)) {
    const q = c as QuarantinedChange;
    r.conflicts.release([q.id]);
    const applied = r.apply([q.change], q.from ? { from: q.from } : {});
    if (applied.quarantined === 0) return { id, restored: true };
    const again = r.conflicts.list({ kinds: ["held", "failed"], limit: 1 }).quarantined[0];
    return { id, restored: false, reason: again?.reason ?? "it still cannot be applied" };
  }
  const conflict = c as Conflict;
  const t = r.catalog.get(conflict.table);
  if (!t)
    throw new RestoreRefusedError(
      `conflict ${id} cannot be restored: table "${conflict.table}" is not tracked here`,
    );
  if (!conflict.lost) throw new RestoreRefusedError(`conflict ${id} kept no version to restore`);
  const displaced = restoreVersion(r.db, t, conflict.lost, `conflict ${id}`, replace);
  for (const d of displaced) {
    const lost = versionOf(d.parts, d.values);
    r.conflicts.record({
      kind: "unique",
      table: t.name,
      pk: lost.pk,
      hlc: r.now(),
      origin: r.nodeId,
      reason: `deleted to restore conflict ${id} (unique index ${d.index})`,
      lost,
      kept: conflict.lost,
    });
  }
  r.conflicts.markRestored(id);
  return { id, restored: true };
}

/** Deletes the rows other than `parts` that hold one of the version's unique values. */
function displace(
  db: Database.Database,
  t: TrackedTable,
  parts: SqlValue[],
  values: Map<string, SqlValue>,
): Displaced[] {
  const out: Displaced[] = [];
  const rows = rowsOf(db, t);
  for (const { name: index, cols } of uniqueIndexes(db, t.name, true)) {
    if (cols.some((c) => !values.has(c) && !t.pkSet.has(c))) continue;
    const wanted = cols.map((c) => columnOf(t, parts, values, c));
    if (wanted.some((v) => v === null)) continue;
    const found = rows.othersHolding(cols, wanted, parts);
    for (const other of found) {
      const row = rows.read(other);
      rows.remove(other);
      out.push({ parts: other, values: row ?? new Map(), index });
    }
  }
  return out;
}

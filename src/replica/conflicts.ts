/**
 * Conflicts: what a resolution rule overrode, and the changes this replica
 * could not apply (yet), in `tw_conflicts` (migration 9).
 *
 * Contract: `record` keeps a conflict — a unique value two rows claimed, an
 * insert over a row another node inserted under the same key, a child row
 * whose parent was deleted — with both versions (`lost`, `kept`), once per
 * lost write however often the batch that carried it arrives. `quarantine`
 * keeps a change that cannot be applied here with its wire form, the peer it
 * came from and the reason: `held` waits for a parent row (`waits`), `failed`
 * was refused by this schema (NOT NULL, CHECK, a type, a table not tracked
 * here) and is retried when the schema changes. `due` says which to retry;
 * `release` forgets those that applied. Nothing here writes an application
 * table: restoring is the Replica's, as a local write.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { changesQuarantined, conflictsRecorded } from "../metrics.js";
import { checkInteger, checkOneOf } from "../validate.js";
import type { Change } from "./change.js";
import type { WireValue } from "./values.js";

export const CONFLICT_KINDS = ["unique", "insert", "orphan"] as const;
export const QUARANTINE_KINDS = ["held", "failed"] as const;
export type ConflictKind = (typeof CONFLICT_KINDS)[number];
export type QuarantineKind = (typeof QUARANTINE_KINDS)[number];

/** One version of a row: its key, the clock of the write, and its columns. */
export interface RowVersion {
  pk: WireValue[];
  hlc?: string;
  origin?: string;
  columns: Record<string, WireValue>;
}

export interface Conflict {
  id: number;
  /** When this replica resolved it (ms since the epoch). */
  at: number;
  kind: ConflictKind;
  table: string;
  /** The key of the row whose write lost. */
  pk: WireValue[];
  /** The lost write's clock and origin. */
  hlc: string;
  origin: string;
  reason: string;
  /** The version that was removed or overridden. */
  lost: RowVersion | null;
  /** The version that stayed (null when nothing took its place). */
  kept: RowVersion | null;
  restoredAt: number | null;
}

export interface QuarantinedChange {
  id: number;
  at: number;
  kind: QuarantineKind;
  table: string;
  pk: WireValue[];
  hlc: string;
  origin: string;
  reason: string;
  change: Change;
  /** The peer the change came from (null: given to `apply` without `from`). */
  from: string | null;
  /** A held change's missing parent row. */
  waits: { table: string; pk: WireValue[] } | null;
  attempts: number;
}

export interface ConflictCounts {
  unique: number;
  insert: number;
  orphan: number;
  held: number;
  failed: number;
}

export interface NewConflict {
  kind: ConflictKind;
  table: string;
  pk: WireValue[];
  hlc: string;
  origin: string;
  reason: string;
  lost: RowVersion | null;
  kept: RowVersion | null;
}

export interface NewQuarantine {
  kind: QuarantineKind;
  change: Change;
  from: string | null;
  reason: string;
  waits?: { table: string; pk: WireValue[] } | null;
  schemaVersion: number;
}

interface Row {
  id: number;
  at: number;
  kind: string;
  tbl: string;
  pk: string;
  hlc: string;
  origin: string;
  reason: string;
  lost: string | null;
  kept: string | null;
  change: string | null;
  src: string | null;
  waits: string | null;
  attempts: number;
  restored_at: number | null;
  sv?: number;
}

export interface ListOptions {
  /** Only these kinds (default: all). */
  kinds?: Array<ConflictKind | QuarantineKind>;
  /** Only this table's. */
  table?: string;
  limit?: number;
  offset?: number;
}

/** What a reader of the conflicts may ask (Replica.conflictLog): no writes. */
export type ConflictReader = Pick<Conflicts, "list" | "total" | "tables" | "get" | "counts">;

export class Conflicts {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(db: Database.Database) {
    this.sql = prepare(db);
  }

  /** Keeps a conflict; false when this lost write was recorded before. */
  record(c: NewConflict): boolean {
    const fresh =
      this.sql.record.run({
        at: Date.now(),
        kind: c.kind,
        tbl: c.table,
        pk: JSON.stringify(c.pk),
        hlc: c.hlc,
        origin: c.origin,
        reason: c.reason,
        lost: c.lost ? JSON.stringify(c.lost) : null,
        kept: c.kept ? JSON.stringify(c.kept) : null,
      }).changes > 0;
    if (fresh) conflictsRecorded.labels(c.kind).inc();
    return fresh;
  }

  /** Keeps (or, tried again, updates) a change that cannot be applied now. */
  quarantine(q: NewQuarantine): void {
    this.sql.quarantine.run({
      at: Date.now(),
      kind: q.kind,
      tbl: q.change.table,
      pk: JSON.stringify(q.change.pk),
      hlc: q.change.hlc,
      origin: q.change.origin,
      reason: q.reason,
      change: JSON.stringify(q.change),
      src: q.from,
      waits: q.waits ? JSON.stringify(q.waits) : null,
      sv: q.schemaVersion,
    });
    changesQuarantined.labels(q.kind).inc();
  }

  /** Whether anything is quarantined: one probe, run after every batch. */
  anyQuarantined(): boolean {
    return this.sql.anyQuarantined.get() !== undefined;
  }

  /**
   * The quarantined changes worth trying again: held ones whose parent's
   * table took rows (`filled`), failed ones quarantined under another schema
   * version, and any whose row a batch just touched (`touched`, by
   * `rowKey`: an insert kept for a NOT NULL column may find it in an update
   * that came later); all of them with `everything`.
   */
  due(
    filled: ReadonlySet<string>,
    touched: ReadonlySet<string>,
    schemaVersion: number,
    everything = false,
  ): QuarantinedChange[] {
    const out: QuarantinedChange[] = [];
    for (const r of this.sql.quarantined.all() as Row[]) {
      const q = toQuarantined(r);
      if (
        everything ||
        touched.has(rowKey(r.tbl, r.pk)) ||
        (q.kind === "held" ? q.waits !== null && filled.has(q.waits.table) : r.sv !== schemaVersion)
      )
        out.push(q);
    }
    return out;
  }

  /** Forgets quarantined changes (they applied, or are quarantined again under a new record). */
  release(ids: number[]): void {
    for (const id of ids) this.sql.release.run(id);
  }

  list(options: ListOptions = {}): { conflicts: Conflict[]; quarantined: QuarantinedChange[] } {
    const limit = options.limit ?? 100;
    const offset = options.offset ?? 0;
    checkInteger("limit", limit, 1);
    checkInteger("offset", offset, 0);
    const rows = this.sql.list.all({ ...filterOf(options), limit, offset }) as Row[];
    const conflicts: Conflict[] = [];
    const quarantined: QuarantinedChange[] = [];
    for (const r of rows) {
      if (isQuarantine(r.kind)) quarantined.push(toQuarantined(r));
      else conflicts.push(toConflict(r));
    }
    return { conflicts, quarantined };
  }

  /** How many `list` would page through with these kinds and table. */
  total(options: Pick<ListOptions, "kinds" | "table"> = {}): number {
    return this.sql.total.get(filterOf(options)) as number;
  }

  /** The tables named by conflicts or quarantined changes, with how many each. */
  tables(): Array<{ table: string; count: number }> {
    return this.sql.tables.all() as Array<{ table: string; count: number }>;
  }

  get(id: number): Conflict | QuarantinedChange | null {
    const r = this.sql.get.get(id) as Row | undefined;
    if (!r) return null;
    return isQuarantine(r.kind) ? toQuarantined(r) : toConflict(r);
  }

  markRestored(id: number): void {
    this.sql.restored.run(Date.now(), id);
  }

  counts(): ConflictCounts {
    const out: ConflictCounts = { unique: 0, insert: 0, orphan: 0, held: 0, failed: 0 };
    for (const r of this.sql.counts.all() as Array<{ kind: keyof ConflictCounts; n: number }>) {
      if (r.kind in out) out[r.kind] = r.n;
    }
    return out;
  }
}

/** The list's filter as its statements' parameters, checked. */
function filterOf(options: Pick<ListOptions, "kinds" | "table">): { kinds: string; tbl: string | null } {
  const kinds = options.kinds ?? [...CONFLICT_KINDS, ...QUARANTINE_KINDS];
  if (!Array.isArray(kinds)) throw new InvalidArgumentError("kinds", "must be an array of kinds");
  for (const k of kinds) checkOneOf("kinds", k, [...CONFLICT_KINDS, ...QUARANTINE_KINDS]);
  const table = options.table ?? null;
  if (table !== null && (typeof table !== "string" || table === ""))
    throw new InvalidArgumentError("table", "must be a table's name");
  return { kinds: JSON.stringify(kinds), tbl: table };
}

/** A row's identity across the wire: its table and its key's wire form, as JSON. */
export function rowKey(table: string, pkJson: string): string {
  return `${table}\u0000${pkJson}`;
}

export function isQuarantine(kind: string): kind is QuarantineKind {
  return kind === "held" || kind === "failed";
}

function toConflict(r: Row): Conflict {
  return {
    id: r.id,
    at: r.at,
    kind: r.kind as ConflictKind,
    table: r.tbl,
    pk: JSON.parse(r.pk) as WireValue[],
    hlc: r.hlc,
    origin: r.origin,
    reason: r.reason,
    lost: r.lost ? (JSON.parse(r.lost) as RowVersion) : null,
    kept: r.kept ? (JSON.parse(r.kept) as RowVersion) : null,
    restoredAt: r.restored_at,
  };
}

function toQuarantined(r: Row & { sv?: number }): QuarantinedChange {
  return {
    id: r.id,
    at: r.at,
    kind: r.kind as QuarantineKind,
    table: r.tbl,
    pk: JSON.parse(r.pk) as WireValue[],
    hlc: r.hlc,
    origin: r.origin,
    reason: r.reason,
    change: JSON.parse(r.change ?? "null") as Change,
    from: r.src,
    waits: r.waits ? (JSON.parse(r.waits) as QuarantinedChange["waits"]) : null,
    attempts: r.attempts,
  };
}

const FILTER = "kind IN (SELECT value FROM json_each(:kinds)) AND (:tbl IS NULL OR tbl = :tbl)";

function prepare(db: Database.Database) {
  return {
    record: db.prepare(
      `INSERT INTO tw_conflicts (at, kind, tbl, pk, hlc, origin, reason, lost, kept)
       VALUES (:at, :kind, :tbl, :pk, :hlc, :origin, :reason, :lost, :kept)
       ON CONFLICT (kind, tbl, pk, hlc, origin) DO NOTHING`,
    ),
    // A change quarantined again keeps its record: its first time, and one more attempt.
    quarantine: db.prepare(
      `INSERT INTO tw_conflicts (at, kind, tbl, pk, hlc, origin, reason, change, src, waits, schema_version, attempts)
       VALUES (:at, :kind, :tbl, :pk, :hlc, :origin, :reason, :change, :src, :waits, :sv, 1)
       ON CONFLICT (kind, tbl, pk, hlc, origin) DO UPDATE SET
         reason = excluded.reason, change = excluded.change, src = excluded.src,
         waits = excluded.waits, schema_version = excluded.schema_version, attempts = attempts + 1`,
    ),
    anyQuarantined: db.prepare("SELECT 1 FROM tw_conflicts WHERE kind IN ('held', 'failed') LIMIT 1"),
    quarantined: db.prepare(
      "SELECT *, schema_version AS sv FROM tw_conflicts WHERE kind IN ('held', 'failed') ORDER BY id",
    ),
    release: db.prepare("DELETE FROM tw_conflicts WHERE id = ? AND kind IN ('held', 'failed')"),
    list: db.prepare(
      `SELECT * FROM tw_conflicts WHERE ${FILTER} ORDER BY id DESC LIMIT :limit OFFSET :offset`,
    ),
    total: db.prepare(`SELECT count(*) FROM tw_conflicts WHERE ${FILTER}`).pluck(),
    tables: db.prepare(
      'SELECT tbl AS "table", count(*) AS count FROM tw_conflicts GROUP BY tbl ORDER BY tbl',
    ),
    get: db.prepare("SELECT * FROM tw_conflicts WHERE id = ?"),
    restored: db.prepare("UPDATE tw_conflicts SET restored_at = ? WHERE id = ?"),
    counts: db.prepare("SELECT kind, count(*) AS n FROM tw_conflicts GROUP BY kind"),
  };
}

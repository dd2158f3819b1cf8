/**
 * Resolver: the rules that make a merged batch fit the application's own
 * constraints, the same on every replica whatever the order of arrival.
 *
 * Contract, for the rows of one round of apply (see apply.ts):
 *
 * - UNIQUE: of two rows that claim one value of a unique index, the earlier
 *   claim keeps it — the greatest clock among the index's columns' live
 *   entries, then origin, then key — and the other row is removed;
 * - FOREIGN KEY, a child whose parent is deleted (a tombstone in the log, or
 *   a delete in the batch): the child's columns are set to NULL when the key
 *   says ON DELETE SET NULL, else the child is removed (cascade or not: the
 *   delete wins, whatever the clocks);
 * - FOREIGN KEY, a child whose parent this replica has never seen (it comes
 *   later: another page, another bucket): the child is held, quarantined
 *   until rows arrive in the parent's table.
 *
 * A removal or a SET NULL is a local write of this replica, made with capture
 * suppressed and logged by `finish` with fresh clocks, so it beats the writes
 * it overrides everywhere; each is kept as a Conflict with both versions.
 */
import type Database from "better-sqlite3";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Conflicts, NewConflict, RowVersion } from "./conflicts.js";
import { refreshFingerprints } from "./fingerprint.js";
import type { ForeignKey, ForeignKeys } from "./foreign-keys.js";
import { type Clock, compareClocks, formatHlc } from "./hlc.js";
import type { ChangeLog, Entry } from "./log.js";
import { aliveAfter, DELETED_N, intended, isLive, type RowState, rowId, versionOf } from "./merge.js";
import { columnOf, rowsOf, type UniqueIndex, uniqueIndexes } from "./rows.js";
import { ROW } from "./triggers.js";
import { compareValues, encodeKey, type SqlValue } from "./values.js";

/** What the write phase learned about a row, carried into the next round. */
export type Decision =
  | { kind: "failed"; reason: string }
  /** The batch's row lost a unique value: remove it. */
  | { kind: "lost"; conflict: NewConflict }
  /** A local row lost a unique value to the batch's: remove it first. */
  | { kind: "evict"; t: TrackedTable; parts: SqlValue[]; conflict: NewConflict };

interface Claim {
  hlc: bigint;
  origin: string;
  key: SqlValue;
}

/** One round's resolutions, written by `finish`. */
export class Round {
  readonly tombstones = new Map<string, { t: TrackedTable; key: SqlValue }>();
  readonly nulls = new Map<string, { t: TrackedTable; key: SqlValue; cols: string[] }>();
  readonly conflicts: NewConflict[] = [];

  constructor(readonly rows: Map<string, RowState>) {}
}

export class Resolver {
  private readonly uniques = new WeakMap<TrackedTable, UniqueIndex[]>();

  constructor(
    private readonly db: Database.Database,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
    private readonly clock: Clock,
    private readonly conflicts: Conflicts,
    readonly fks: ForeignKeys,
  ) {}

  /** Applies what earlier rounds decided, then the foreign-key rules, before anything of the batch is written. */
  plan(round: Round, decisions: Map<string, Decision>): void {
    for (const [id, d] of decisions) {
      const s = round.rows.get(id);
      if (d.kind === "evict") {
        this.remove(round, d.t, d.parts, d.conflict);
      } else if (s) {
        if (d.kind === "failed") s.skip = { kind: "failed", reason: d.reason };
        else this.removeState(round, s, d.conflict);
      }
    }
    if (this.catalog.foreignKeys) this.planForeignKeys(round);
  }

  /**
   * Decides a UNIQUE failure of row `s` against the row that holds the value
   * now: null when no such row is found (the failure is then the row's own).
   */
  decideUnique(s: RowState): Decision | null {
    const mine = intended(s, (c) => rowsOf(this.db, s.t).defaultOf(c));
    let unique = this.uniques.get(s.t);
    if (!unique) {
      unique = uniqueIndexes(this.db, s.t.name, false);
      this.uniques.set(s.t, unique);
    }
    for (const u of unique) {
      const values = u.cols.map((c) => columnOf(s.t, s.parts, mine, c));
      if (values.some((v) => v === null)) continue;
      const other = rowsOf(this.db, s.t).othersHolding(u.cols, values, s.parts)[0];
      if (!other) continue;
      const otherKey = encodeKey(other);
      const a = this.claimOf(s, u.cols);
      const b = this.storedClaim(s.t, otherKey, u.cols);
      const reason = `two rows claimed ${describeCols(s.t, u.cols, values)}; the earlier claim keeps it`;
      const otherValues = rowsOf(this.db, s.t).read(other) ?? new Map();
      const mineVersion = versionOf(s.parts, mine, s.row ?? undefined);
      const otherVersion = versionOf(other, otherValues, b.hlc ? b : undefined);
      if (earlier(a, b)) {
        return {
          kind: "evict",
          t: s.t,
          parts: other,
          conflict: conflict("unique", s.t, otherVersion, mineVersion, reason),
        };
      }
      return { kind: "lost", conflict: conflict("unique", s.t, mineVersion, otherVersion, reason) };
    }
    return null;
  }

  /** Logs the round's resolutions with fresh clocks and keeps its conflicts. */
  finish(round: Round): void {
    const origin = this.clock.nodeId;
    for (const { t, key } of round.tombstones.values()) {
      const { hlc, seq } = this.clock.tick();
      this.log.put(t.id, key, { col: ROW, val: DELETED_N, hlc, origin, seq });
      this.log.prune(t.id, key, hlc, origin);
    }
    for (const { t, key, cols } of round.nulls.values()) {
      const { hlc, seq } = this.clock.tick();
      for (const col of cols) this.log.put(t.id, key, { col, val: null, hlc, origin, seq });
    }
    // The rows set to NULL hold new values: new fingerprints, or ingest would take them for local writes.
    refreshFingerprints(this.db, round.nulls.values());
    for (const c of round.conflicts) this.conflicts.record(c);
  }

  /** Removes a row of the batch by rule: not written, its table row (if any) deleted, a tombstone logged. */
  private removeState(round: Round, s: RowState, c: NewConflict): void {
    if (s.skip?.kind === "removed") return;
    s.skip = { kind: "removed" };
    round.conflicts.push(c);
    round.tombstones.set(rowId(s.t, s.key), { t: s.t, key: s.key });
    if (s.wasAlive) this.deleteRow(round, s.t, s.parts);
  }

  /** Removes a row by rule, whether or not the batch touches it. */
  private remove(round: Round, t: TrackedTable, parts: SqlValue[], c: NewConflict): void {
    const key = encodeKey(parts);
    const s = round.rows.get(rowId(t, key));
    if (s) {
      this.removeState(round, s, c);
      return;
    }
    if (round.tombstones.has(rowId(t, key))) return;
    round.conflicts.push(c);
    round.tombstones.set(rowId(t, key), { t, key });
    this.deleteRow(round, t, parts);
  }

  /** Deletes a table row, after applying the foreign-key rule to the rows that point at it. */
  private deleteRow(round: Round, t: TrackedTable, parts: SqlValue[]): void {
    this.orphanChildren(round, t, parts);
    rowsOf(this.db, t).remove(parts);
  }

  /** The table's rows pointing at a parent row that is going away: SET NULL or removal. */
  private orphanChildren(round: Round, parent: TrackedTable, parts: SqlValue[]): void {
    for (const fk of this.fks.referencing(parent.name)) {
      const child = this.catalog.peek(fk.child);
      if (!child || !fk.toKey) continue;
      for (const r of this.fks.children(fk, parts, [...child.pk, ...child.columns])) {
        const childParts = r.slice(0, child.pk.length);
        const key = encodeKey(childParts);
        const id = rowId(child, key);
        const s = round.rows.get(id);
        // The batch deletes it too, or already removed it.
        if (s && (s.row?.val === DELETED_N || s.skip !== null)) continue;
        if (round.tombstones.has(id)) continue;
        const values = new Map(child.columns.map((c, i) => [c, r[child.pk.length + i] as SqlValue]));
        const lost = versionOf(childParts, values, this.storedRow(child, key) ?? undefined);
        const reason = `its parent ${describeKey(parent, parts)} was deleted`;
        if (s) {
          this.orphanState(round, s, fk, reason);
        } else if (setsNull(fk)) {
          this.setNull(round, child, childParts, fk.from);
          round.conflicts.push(
            conflict("orphan", child, lost, null, `${reason}; ${fk.from.join(", ")} set to NULL`),
          );
        } else {
          this.remove(
            round,
            child,
            childParts,
            conflict("orphan", child, lost, null, `${reason}; the row was removed`),
          );
        }
      }
    }
  }

  /** A row of the batch whose parent is gone: SET NULL in the row as written, or removal. */
  private orphanState(round: Round, s: RowState, fk: ForeignKey, reason: string): void {
    const mine = intended(s, (c) => rowsOf(this.db, s.t).defaultOf(c));
    const lost = versionOf(s.parts, mine, s.row ?? undefined);
    if (setsNull(fk)) {
      const at = s.row as Entry;
      for (const c of fk.from)
        s.cols.set(c, { col: c, val: null, hlc: at.hlc, origin: at.origin, seq: at.seq, implicit: true });
      if (!s.rowChanged)
        for (const c of fk.from)
          s.won.set(c, { col: c, val: null, hlc: at.hlc, origin: at.origin, seq: at.seq });
      round.nulls.set(rowId(s.t, s.key), { t: s.t, key: s.key, cols: fk.from });
      round.conflicts.push(
        conflict("orphan", s.t, lost, null, `${reason}; ${fk.from.join(", ")} set to NULL`),
      );
      return;
    }
    this.removeState(round, s, conflict("orphan", s.t, lost, null, `${reason}; the row was removed`));
  }

  private setNull(round: Round, t: TrackedTable, parts: SqlValue[], cols: string[]): void {
    rowsOf(this.db, t).update(
      cols,
      parts,
      cols.map(() => null),
    );
    const key = encodeKey(parts);
    round.nulls.set(rowId(t, key), { t, key, cols });
  }

  /**
   * The foreign-key rules for the batch's rows: dependents of rows it
   * deletes, then rows it writes whose parent is deleted (removed or SET
   * NULL) or unknown (held), until nothing moves (a held parent holds its
   * children).
   */
  private planForeignKeys(round: Round): void {
    for (const s of [...round.rows.values()]) {
      if (!s.t.relayed && s.wasAlive && !aliveAfter(s) && s.skip?.kind !== "removed") {
        this.orphanChildren(round, s.t, s.parts);
      }
    }
    for (let moved = true; moved; ) {
      moved = false;
      for (const s of round.rows.values()) {
        if (s.t.relayed || !aliveAfter(s)) continue;
        const fks = this.fks.of(s.t.name);
        if (fks.length === 0) continue;
        const mine = intended(s, (c) => rowsOf(this.db, s.t).defaultOf(c));
        for (const fk of fks) {
          const values = fk.from.map((c) => columnOf(s.t, s.parts, mine, c));
          if (values.some((v) => v === null)) continue;
          const parent = this.parentState(round, fk, values);
          if (parent === "ok") continue;
          const where = describeKey({ name: fk.parent }, values);
          if (parent === "deleted") this.orphanState(round, s, fk, `its parent ${where} was deleted`);
          else
            s.skip = {
              kind: "held",
              reason: `waits for its parent ${where}`,
              waits: { table: fk.parent, pk: values },
            };
          moved = true;
          break;
        }
      }
    }
  }

  private parentState(round: Round, fk: ForeignKey, values: SqlValue[]): "ok" | "deleted" | "unknown" {
    const parent = this.catalog.peek(fk.parent);
    const key = parent && fk.toKey ? encodeKey(values) : null;
    if (parent && key !== null) {
      const ps = round.rows.get(rowId(parent, key));
      if (ps) {
        if (aliveAfter(ps)) return "ok";
        if (ps.skip?.kind === "removed" || ps.row?.val === DELETED_N) return "deleted";
        if (ps.skip) return "unknown";
      }
      if (round.tombstones.has(rowId(parent, key))) return "deleted";
    }
    if (this.fks.parentExists(fk, values)) return "ok";
    if (parent && key !== null && this.storedRow(parent, key)?.val === DELETED_N) return "deleted";
    return "unknown";
  }

  /** A key's row entry in the log, or null. */
  private storedRow(t: TrackedTable, key: SqlValue): Entry | null {
    for (const e of this.log.loadMany(t.id, [key]))
      if (e.col === ROW && compareValues(e.pk, key) === 0) return e;
    return null;
  }

  /** The claim of a batch row on some columns: the latest live entry among them. */
  private claimOf(s: RowState, cols: string[]): Claim {
    const row = s.row as Entry;
    let best: Claim = { hlc: row.hlc, origin: row.origin, key: s.key };
    for (const c of cols) {
      const e = s.cols.get(c);
      if (isLive(e, row) && !e.implicit && compareClocks(e.hlc, e.origin, best.hlc, best.origin) > 0)
        best = { hlc: e.hlc, origin: e.origin, key: s.key };
    }
    return best;
  }

  /** The claim of a row as the log has it (no entry: the earliest clock there is). */
  private storedClaim(t: TrackedTable, key: SqlValue, cols: string[]): Claim {
    const entries = this.log.loadMany(t.id, [key]).filter((e) => compareValues(e.pk, key) === 0);
    const row = entries.find((e) => e.col === ROW);
    if (!row) return { hlc: 0n, origin: "", key };
    let best: Claim = { hlc: row.hlc, origin: row.origin, key };
    for (const e of entries) {
      if (e.col === ROW || !cols.includes(e.col)) continue;
      if (
        compareClocks(e.hlc, e.origin, row.hlc, row.origin) >= 0 &&
        compareClocks(e.hlc, e.origin, best.hlc, best.origin) > 0
      )
        best = { hlc: e.hlc, origin: e.origin, key };
    }
    return best;
  }
}

/**
 * Whether an orphan keeps its row with the reference set to NULL: the key
 * says ON DELETE SET NULL, or it says nothing of its own (NO ACTION,
 * RESTRICT: the application would have refused the delete, or — as Django
 * and other ORMs that run ON DELETE in their own code — acted itself) and the
 * reference may be NULL. Otherwise (CASCADE, SET DEFAULT, a NOT NULL
 * reference) the orphan is removed.
 */
function setsNull(fk: ForeignKey): boolean {
  if (!fk.nullable) return false;
  return fk.onDelete === "SET NULL" || fk.onDelete === "NO ACTION" || fk.onDelete === "RESTRICT";
}

/** Whether claim a is earlier than b: by clock, then origin, then key. */
function earlier(a: Claim, b: Claim): boolean {
  return (compareClocks(a.hlc, a.origin, b.hlc, b.origin) || compareValues(a.key, b.key)) < 0;
}

function conflict(
  kind: NewConflict["kind"],
  t: { name: string },
  lost: RowVersion,
  kept: RowVersion | null,
  reason: string,
): NewConflict {
  return {
    kind,
    table: t.name,
    pk: lost.pk,
    hlc: lost.hlc ?? formatHlc(0n),
    origin: lost.origin ?? "",
    reason,
    lost,
    kept,
  };
}

function describeKey(t: { name: string }, parts: SqlValue[]): string {
  return `${t.name} ${JSON.stringify(parts.map((p) => (typeof p === "bigint" ? Number(p) : p)))}`.slice(
    0,
    200,
  );
}

function describeCols(t: TrackedTable, cols: string[], values: SqlValue[]): string {
  const shown = values.map((v) =>
    typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? "<blob>" : String(v),
  );
  return `${t.name} (${cols.join(", ")}) = (${shown.join(", ")})`.slice(0, 200);
}

/**
 * Applier: merges a batch of changes from other replicas into this one.
 *
 * Contract: the whole batch is checked before anything is written (see
 * `incoming.ts`); a malformed change refuses it whole with an error naming
 * the change. A batch is one IMMEDIATE transaction with capture suppressed,
 * so the apply is not captured again as a local write. The merge is
 * merge.ts's, a pure function of the entries seen. Winning entries go to the
 * local log with their original HLC and origin (so they relay onward) and a
 * new local sequence number; losing ones change nothing, so applying a batch
 * twice changes nothing. An insert's values for the table's columns go to
 * the table only (its row entry stands for them); values the table cannot
 * hold — columns it lacks (yet), entries newer than a tombstone, tables a
 * relay only relays — are kept in the entry, and written to the table by a
 * later `track` once the column or table exists. A relay keeps a winning
 * insert's values in its row entry (`vals`), one log row per insert.
 *
 * Rows are written as the application's schema wants them: a change to some
 * columns of an existing row is an UPDATE of those columns, a row the table
 * lacks is inserted whole. What the schema still refuses never stops the
 * rest: the rules of resolve.ts settle UNIQUE and FOREIGN KEY conflicts, and
 * a change that still cannot be applied (a NOT NULL or CHECK it breaks, a
 * table not tracked here) is quarantined (conflicts.ts) and retried when the
 * schema changes or its parent arrives. A write the rows refuse is found by
 * writing them one by one, and the batch is merged again from the start with
 * what that taught (a round), so every rule sees the whole batch.
 *
 * The parts a round runs through: row-states.ts loads the keys' current
 * cells, merge.ts merges, resolve.ts plans the rules, materialize.ts writes
 * the table rows and winners.ts the log rows.
 */
import Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { isNodeId } from "../node-id.js";
import type { Store } from "../store.js";
import { checkFlag, checkObject } from "../validate.js";
import type { Catalog } from "./catalog.js";
import { Conflicts } from "./conflicts.js";
import { ForeignKeys } from "./foreign-keys.js";
import type { Clock } from "./hlc.js";
import { type Authorizer, Checker, type Incoming, NotTrackedHereError } from "./incoming.js";
import type { ChangeLog, Entry } from "./log.js";
import { Materializer } from "./materialize.js";
import { ALIVE_N, liveValues, mergeOne, type RowState, rowId, versionOf } from "./merge.js";
import { type Decision, Resolver, Round } from "./resolve.js";
import { Retrier, touchedKeys } from "./retry.js";
import { loadRowStates } from "./row-states.js";
import { schemaVersion } from "./schema.js";
import { type SqlValue, toWire } from "./values.js";
import { writeWinners } from "./winners.js";

export { type Authorizer, ClockDriftError, InvalidChangeError, NotTrackedHereError } from "./incoming.js";

export interface ApplyOptions {
  /**
   * The node id of the peer the batch came from: entries it wins are marked
   * with it, and `changesSince(…, { excludeSource })` can leave them out.
   */
  from?: string;
  /**
   * Judges each table of the batch by the bucket this replica files it under
   * (see Authorizer); throwing refuses the batch whole, nothing written. The
   * hub checks the pushing token's scope here, against the replica's answer.
   */
  authorize?: Authorizer;
  /**
   * Refuse the batch (NotTrackedHereError) when a change names a table this
   * replica does not track, instead of quarantining the change. A hub does:
   * its clients are not trusted to fill its disk with tables it never had.
   */
  refuseUnknownTables?: boolean;
}

export interface ApplyResult {
  /** Changes in the batch. */
  received: number;
  /** Changes that won at least one entry (the rest were old news or duplicates). */
  applied: number;
  /** Changes kept aside because they cannot be applied here yet (see `conflicts`). */
  quarantined: number;
}

/** Rounds of one batch before what still fails is quarantined without another. */
const MAX_ROUNDS = 8;

/** The write phase learned something: merge the batch again from the start. */
class Restart extends Error {}

export class Applier {
  readonly conflicts: Conflicts;
  private readonly checker: Checker;
  private readonly resolver: Resolver;
  private readonly retrier: Retrier;
  private readonly materializer: Materializer;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly log: ChangeLog,
    relay: boolean,
  ) {
    this.checker = new Checker(store.db, clock, catalog, relay);
    this.conflicts = new Conflicts(store.db);
    this.materializer = new Materializer(store.db);
    this.resolver = new Resolver(store.db, catalog, log, clock, this.conflicts, new ForeignKeys(store.db));
    this.retrier = new Retrier(store.db, this.conflicts, (changes, from) => this.applyIn(changes, from));
  }

  apply(changes: unknown, options: ApplyOptions = {}): ApplyResult {
    if (!Array.isArray(changes)) throw new InvalidArgumentError("changes", "must be an array of changes");
    checkObject("options", options);
    const from = options.from ?? null;
    if (from !== null && !isNodeId(from))
      throw new InvalidArgumentError("from", `is not a node id: ${JSON.stringify(from)}`);
    if (options.authorize !== undefined && typeof options.authorize !== "function")
      throw new InvalidArgumentError("authorize", "must be a function (table, bucket, isNew, index)");
    checkFlag("refuseUnknownTables", options.refuseUnknownTables);
    const state = { recorded: false };
    try {
      return this.store.write(() => {
        const result = this.applyIn(changes, from, options, state);
        if (!this.retrier.running && this.conflicts.anyQuarantined())
          this.retrier.retry(result.filled, touchedKeys(result.written), false);
        return { received: result.received, applied: result.applied, quarantined: result.quarantined.size };
      }, "replica.apply");
    } catch (err) {
      // The rollback took back relayed tables `commit` recorded: so must the catalog, or it keeps them.
      if (state.recorded) this.catalog.refresh(true);
      throw err;
    }
  }

  /**
   * Tries every quarantined change again (after a migration, say); returns
   * how many applied. Held and failed changes are also retried by `apply`
   * when their parent's table takes rows or the schema has changed.
   */
  retryQuarantined(): number {
    return this.store.write(() => this.retrier.retry(new Set(), new Set(), true), "replica.conflict");
  }

  /** The batch's work, inside the caller's transaction. */
  private applyIn(
    changes: unknown[],
    from: string | null,
    options: ApplyOptions = {},
    state: { recorded: boolean } = { recorded: false },
  ) {
    // Inside the transaction: the catalog cannot move between check and write.
    const now = Date.now();
    this.catalog.refresh();
    this.checker.reset(options.authorize);
    const batch: Incoming[] = [];
    const wire: unknown[] = [];
    const notHere: Array<{ change: unknown; reason: string }> = [];
    for (let i = 0; i < changes.length; i++) {
      // A table whose capture a schema change broke takes nothing until that is fixed.
      const problem = this.catalog.problemOf([(changes[i] as { table?: unknown } | null)?.table]);
      if (problem !== null) {
        notHere.push({ change: changes[i], reason: problem });
        continue;
      }
      try {
        batch.push(this.checker.check(changes[i], i, now));
        wire.push(changes[i]);
      } catch (err) {
        // A table this replica does not track (yet: its migration may come later) blocks nothing.
        if (!(err instanceof NotTrackedHereError) || options.refuseUnknownTables) throw err;
        notHere.push({ change: changes[i], reason: `table "${err.table}" is not tracked here` });
      }
    }
    if (this.checker.commit(batch)) state.recorded = true;
    const result = this.rounds(batch, wire, from);
    const version = schemaVersion(this.store.db);
    for (const q of notHere) {
      this.conflicts.quarantine({
        kind: "failed",
        change: q.change as never,
        from,
        reason: q.reason,
        schemaVersion: version,
      });
      result.quarantined.add(identity(q.change));
    }
    return { received: changes.length, ...result };
  }

  /** Merges the batch, again from the start each time the write phase learns a decision. */
  private rounds(batch: Incoming[], wire: unknown[], from: string | null) {
    const decisions = new Map<string, Decision>();
    for (let round = 1; ; round++) {
      try {
        return this.store.db.transaction(() =>
          this.round(batch, wire, from, decisions, round >= MAX_ROUNDS),
        )();
      } catch (err) {
        if (!(err instanceof Restart)) throw err;
      }
    }
  }

  private round(
    batch: Incoming[],
    wire: unknown[],
    from: string | null,
    decisions: Map<string, Decision>,
    last: boolean,
  ) {
    // A batch may hold a child row before its parent: check foreign keys at
    // commit. SQLite sets a flag pragma's flag while it compiles it, and the
    // compiled program only expires every prepared statement of the
    // connection (which made each batch re-prepare them all): so the pragma
    // is prepared, not run, once per transaction, as the flag resets at
    // commit. The foreign-key test holds it to that.
    if (this.catalog.foreignKeys) this.store.db.prepare("PRAGMA defer_foreign_keys = ON");
    this.clock.suppress(true);
    let { hlc: maxHlc, seq } = this.clock.read();
    const { rows, of } = loadRowStates(this.store.db, this.log, batch);
    const round = new Round(rows);
    for (let i = 0; i < batch.length; i++) {
      const inc = batch[i] as Incoming;
      const s = of[i] as RowState;
      if (inc.hlc > maxHlc) maxHlc = inc.hlc;
      s.changes.push(i);
      // An insert over a row another node inserted under the same key: one of the two is overridden.
      const prior = s.row;
      const concurrent =
        inc.op === "insert" && prior?.val === ALIVE_N && prior.origin !== inc.origin && prior.hlc !== inc.hlc;
      const before = concurrent ? liveValues(s) : null;
      if (mergeOne(s, inc, seq + 1n)) {
        seq++;
        s.wins++;
      }
      if (before && prior) this.insertConflict(round, s, inc, prior, before);
    }
    this.resolver.plan(round, decisions);
    this.write(round, from, decisions, last);
    this.clock.observe(maxHlc, seq);
    this.resolver.finish(round);
    const quarantined = this.quarantine(round, wire, from);
    this.clock.suppress(false);
    let applied = 0;
    const filled = new Set<string>();
    // The rows written, for the quarantine to look for its own (keyed only if anything waits).
    const written: RowState[] = [];
    for (const s of rows.values()) {
      if (s.skip?.kind === "held" || s.skip?.kind === "failed") continue;
      applied += s.wins;
      if (s.wins > 0) written.push(s);
      if (s.rowChanged && s.row?.val === ALIVE_N) filled.add(s.t.name);
    }
    return { applied, quarantined, filled, written };
  }

  private insertConflict(
    round: Round,
    s: RowState,
    inc: Incoming,
    prior: Entry,
    before: Array<[string, SqlValue]>,
  ) {
    const theirs = versionOf(inc.parts, inc.cols, inc);
    const ours = versionOf(s.parts, before, prior);
    const incomingWon = s.row !== prior;
    const [lost, kept] = incomingWon ? [ours, theirs] : [theirs, ours];
    round.conflicts.push({
      kind: "insert",
      table: s.t.name,
      pk: lost.pk,
      hlc: lost.hlc as string,
      origin: lost.origin as string,
      reason: `two nodes inserted a row under this key (${prior.origin} and ${inc.origin}); the later insert replaced the other`,
      lost,
      kept,
    });
  }

  /**
   * Writes the rows that are written as merged: all at once, and when the
   * schema refuses that, one by one to find which, deciding for each (a
   * UNIQUE rule, or quarantine) and starting the round again.
   */
  private write(round: Round, from: string | null, decisions: Map<string, Decision>, last: boolean): void {
    const live = [...round.rows.values()].filter((s) => s.skip === null);
    const db = this.store.db;
    const both = (states: RowState[]) =>
      db.transaction(() => {
        writeWinners(db, this.log, states, from, this.materializer.write(states));
      })();
    try {
      both(live);
      return;
    } catch (err) {
      if (!isDataError(err)) throw err;
    }
    let learned = false;
    for (const s of live) {
      try {
        both([s]);
      } catch (err) {
        if (!isDataError(err)) throw err;
        const unique = (err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE";
        const d: Decision = (unique ? this.resolver.decideUnique(s) : null) ?? {
          kind: "failed",
          reason: (err as Error).message,
        };
        if (last) {
          // No more rounds: what still fails waits in quarantine.
          s.skip = { kind: "failed", reason: d.kind === "failed" ? d.reason : (err as Error).message };
          continue;
        }
        const id =
          d.kind === "evict" ? `evict:${d.t.id}:${JSON.stringify(d.parts.map(String))}` : rowId(s.t, s.key);
        decisions.set(id, d);
        learned = true;
      }
    }
    if (learned) throw new Restart();
  }

  /** Keeps the changes of held and refused rows, with their wire form; returns their identities. */
  private quarantine(round: Round, wire: unknown[], from: string | null): Set<string> {
    const out = new Set<string>();
    const version = schemaVersion(this.store.db);
    for (const s of round.rows.values()) {
      const skip = s.skip;
      if (skip?.kind !== "held" && skip?.kind !== "failed") continue;
      for (const i of s.changes) {
        const change = wire[i];
        this.conflicts.quarantine({
          kind: skip.kind,
          change: change as never,
          from,
          reason: skip.reason,
          waits:
            skip.kind === "held" && skip.waits
              ? { table: skip.waits.table, pk: skip.waits.pk.map(toWire) }
              : null,
          schemaVersion: version,
        });
        out.add(identity(change));
      }
    }
    return out;
  }
}

/** A failure caused by the data, not by the database: a constraint, a type, a size. */
function isDataError(err: unknown): boolean {
  if (!(err instanceof Database.SqliteError)) return false;
  return (
    err.code.startsWith("SQLITE_CONSTRAINT") || err.code === "SQLITE_MISMATCH" || err.code === "SQLITE_TOOBIG"
  );
}

/** A change's identity in quarantine: table, key, clock and origin. */
function identity(change: unknown): string {
  const c = change as { table?: unknown; pk?: unknown; hlc?: unknown; origin?: unknown };
  return JSON.stringify([c.table, c.pk, c.hlc, c.origin]);
}

/**
 * Incoming: the checks a change must pass before the applier merges it, and
 * the relayed tables a relay learns of from the changes themselves.
 *
 * Contract: `check` turns one wire change into an `Incoming` or throws
 * `InvalidChangeError` naming it (unknown table, wrong key arity, malformed
 * value, bad op/clock/origin/bucket, clock more than maxDriftMs ahead). A
 * table this replica does not track is refused, unless the replica is a relay:
 * then the change is checked for shape only (a key of 1 to 64 values, the same
 * arity as earlier changes of that table, a bucket name) and the table is
 * recorded as relayed by `commit`, which runs only once the whole batch passed,
 * so a refused batch records nothing. A table's bucket is decided here, once:
 * a tracked table's is its own, a relayed table keeps the bucket it was first
 * recorded with (a change naming another is refused: no push moves a table),
 * and a new relayed table takes the change's. The optional authorizer is told
 * that answer once per table per batch, and refuses the batch by throwing.
 */
import type Database from "better-sqlite3";
import { TidewireError } from "../errors.js";
import { isNodeId } from "../node-id.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import type { Clock } from "./hlc.js";
import { COUNTER_BITS, parseHlc } from "./hlc.js";
import { ROW } from "./triggers.js";
import { compositeKeyProblem, describeValue, encodeKey, fromWire, type SqlValue } from "./values.js";

/** A change in a batch cannot be applied; the batch was refused whole and nothing was written. */
export class InvalidChangeError extends TidewireError {
  constructor(
    readonly index: number,
    readonly reason: string,
    what: string,
    code = "ERR_INVALID_CHANGE",
  ) {
    super(
      `changes[${index}]${what ? ` (${what})` : ""} ${reason}; the batch was refused and nothing applied`,
      code,
    );
    this.name = "InvalidChangeError";
  }
}

/**
 * A change names a table this replica does not track (and, not being a
 * relay, cannot keep): the applier quarantines it instead of refusing the
 * batch, since the table's migration may simply not have run here yet.
 */
export class NotTrackedHereError extends InvalidChangeError {
  constructor(
    index: number,
    readonly table: string,
    what: string,
  ) {
    super(index, `names table "${table}", which is not tracked here`, what, "ERR_UNKNOWN_TABLE");
    this.name = "NotTrackedHereError";
  }
}

/** A change's clock is further ahead of local time than maxDriftMs allows. */
export class ClockDriftError extends InvalidChangeError {
  constructor(index: number, reason: string, what: string) {
    super(index, reason, what, "ERR_CLOCK_DRIFT");
    this.name = "ClockDriftError";
  }
}

export interface Incoming {
  t: TrackedTable;
  key: SqlValue;
  parts: SqlValue[];
  op: "insert" | "update" | "delete";
  cols: Array<[string, SqlValue]>;
  hlc: bigint;
  origin: string;
}

/**
 * Told, once per table in a batch and before anything is written, the bucket
 * this replica files the table's changes under; `isNew`: a relayed table the
 * batch would record. Throws to refuse the batch (the error propagates as is).
 */
export type Authorizer = (table: string, bucket: string, isNew: boolean, index: number) => void;

const MAX_KEY_PARTS = 64;

export class Checker {
  /** Relayed tables first seen in this batch: written by `commit`. */
  private readonly fresh = new Map<string, TrackedTable>();
  private reloaded = false;
  private authorize: Authorizer | undefined;
  /** Tables the authorizer accepted in this batch. */
  private readonly authorized = new Set<string>();
  private lastOrigin: unknown = undefined;
  private driftNow = Number.NaN;
  private driftLimit = 0n;
  private readonly sql: { insert: Database.Statement };

  constructor(
    db: Database.Database,
    private readonly clock: Clock,
    private readonly catalog: Catalog,
    private readonly relay: boolean,
  ) {
    this.sql = {
      insert: db.prepare(
        "INSERT INTO tw_tracked (name, bucket, pk, cols, tracked_at, relayed) VALUES (?, ?, ?, '[]', ?, 1)",
      ),
    };
  }

  check(c: unknown, index: number, now: number): Incoming {
    // No closures here: this runs once per change of every batch.
    const o = (c ?? {}) as Record<string, unknown>;
    if (typeof c !== "object" || c === null || Array.isArray(c)) refuse(index, null, "is not an object");
    if (typeof o.table !== "string") refuse(index, o, "has no table name");
    if (o.bucket !== undefined && !isName(o.bucket))
      refuse(index, o, `has bucket ${describeValue(o.bucket)}`);
    const table = this.table(o, index);
    if (this.authorize && !this.authorized.has(table.name)) {
      this.authorize(table.name, table.bucket, table.id < 0, index);
      this.authorized.add(table.name);
    }
    if (o.op !== "insert" && o.op !== "update" && o.op !== "delete")
      refuse(index, o, `has op ${describeValue(o.op)}`);
    if (!Array.isArray(o.pk) || o.pk.length !== table.pk.length) {
      refuse(
        index,
        o,
        `has a key of ${Array.isArray(o.pk) ? o.pk.length : "no"} parts; ${table.name} has ${table.pk.length}`,
      );
    }
    const wire = o.pk as unknown[];
    const parts: SqlValue[] = [];
    for (let i = 0; i < wire.length; i++) {
      let v: SqlValue = null;
      try {
        v = fromWire(wire[i]);
      } catch (err) {
        refuse(index, o, `has a malformed key part ${i}: ${(err as Error).message}`);
      }
      const problem = table.pk.length > 1 ? compositeKeyProblem(v) : v === null ? "a NULL key" : null;
      if (problem) refuse(index, o, `has ${problem}`);
      parts.push(v);
    }
    const cols: Array<[string, SqlValue]> = [];
    const given = o.columns ?? {};
    if (typeof given !== "object" || given === null || Array.isArray(given))
      refuse(index, o, "has columns that are not an object");
    for (const name in given as object) {
      if (!Object.hasOwn(given as object, name)) continue;
      if (name === ROW) refuse(index, o, 'has a column named ""');
      if (table.pkSet.has(name)) refuse(index, o, `sets key column "${name}" as a column`);
      try {
        cols.push([name, fromWire((given as Record<string, unknown>)[name])]);
      } catch (err) {
        refuse(index, o, `has a malformed value for column "${name}": ${(err as Error).message}`);
      }
    }
    if (o.op === "delete" && cols.length > 0) refuse(index, o, "is a delete that carries columns");
    let hlc = 0n;
    try {
      hlc = parseHlc(o.hlc);
    } catch (err) {
      refuse(index, o, `has ${(err as Error).message}`);
    }
    // A batch has few origins: check each once in a row.
    if (o.origin !== this.lastOrigin) {
      if (!isNodeId(o.origin))
        refuse(index, o, `has origin ${describeValue(o.origin)}, which is not a node id`);
      this.lastOrigin = o.origin;
    }
    if (now !== this.driftNow) {
      this.driftNow = now;
      // The first clock too far ahead: (now + maxDriftMs + 1) ms, counter 0.
      this.driftLimit = BigInt(Math.floor(now + this.clock.maxDriftMs) + 1) << COUNTER_BITS;
    }
    if (hlc >= this.driftLimit) {
      try {
        this.clock.checkDrift(hlc, now);
      } catch (err) {
        throw new ClockDriftError(index, `is refused: ${(err as Error).message}`, describeChange(o));
      }
    }
    return {
      t: table,
      key: encodeKey(parts),
      parts,
      op: o.op as Incoming["op"],
      cols,
      hlc,
      origin: o.origin as string,
    };
  }

  /**
   * Records the relayed tables the batch introduced and points the batch at
   * their catalog entries. Call once the whole batch passed `check`, inside
   * the same transaction. True when it recorded any.
   */
  commit(batch: Incoming[]): boolean {
    if (this.fresh.size === 0) return false;
    for (const t of this.fresh.values())
      this.sql.insert.run(t.name, t.bucket, JSON.stringify(t.pk), Date.now());
    this.fresh.clear();
    this.catalog.refresh(true);
    for (const inc of batch) {
      if (inc.t.relayed) inc.t = this.catalog.peekRelayed(inc.t.name) as TrackedTable;
    }
    return true;
  }

  /** Starts a batch: forgets what a refused one would have recorded; `authorize` judges this one. */
  reset(authorize?: Authorizer): void {
    this.fresh.clear();
    this.reloaded = false;
    this.authorize = authorize;
    this.authorized.clear();
  }

  private table(o: Record<string, unknown>, index: number): TrackedTable {
    const name = o.table as string;
    const tracked = this.catalog.peek(name) ?? this.catalog.peekRenamed(name);
    if (tracked) return tracked;
    const fail = (reason: string, code?: string): never => {
      throw new InvalidChangeError(index, reason, describeChange(o), code);
    };
    if (!this.relay) throw new NotTrackedHereError(index, name, describeChange(o));
    if (!isName(name) || /^(tw_|sqlite_)/i.test(name)) fail(`names table ${describeValue(name)}`);
    let known = this.fresh.get(name) ?? this.catalog.peekRelayed(name);
    if (!known && !this.reloaded) {
      // Recording a relayed table moves no schema version: another connection may have done it.
      this.reloaded = true;
      this.catalog.refresh(true);
      known = this.catalog.peekRelayed(name);
    }
    const bucket = o.bucket as string | undefined;
    if (known) {
      if (bucket === undefined || bucket === known.bucket) return known;
      // Following it would hand the table's history to another bucket's readers.
      return fail(
        `names bucket "${bucket}", but table "${name}" is in bucket "${known.bucket}" here, and a push never moves a table`,
        "ERR_TABLE_BUCKET",
      );
    }
    if (bucket === undefined)
      fail(`names table "${name}", which is not tracked here, and has no bucket`, UNKNOWN_TABLE);
    const arity = Array.isArray(o.pk) ? o.pk.length : 0;
    if (arity < 1 || arity > MAX_KEY_PARTS)
      fail(`has a key of ${arity} parts; a key has 1 to ${MAX_KEY_PARTS}`);
    const t: TrackedTable = {
      id: -1,
      name,
      bucket: bucket as string,
      pk: Array.from({ length: arity }, () => ""),
      columns: [],
      pkSet: new Set(),
      columnSet: new Set(),
      relayed: true,
    };
    this.fresh.set(name, t);
    return t;
  }
}

const UNKNOWN_TABLE = "ERR_UNKNOWN_TABLE";

function refuse(index: number, o: Record<string, unknown> | null, reason: string): never {
  throw new InvalidChangeError(index, reason, o ? describeChange(o) : "");
}

function isName(v: unknown): v is string {
  return typeof v === "string" && v.trim().length > 0 && v.length <= 200;
}

/** A change in a few words, for an error message: op, table, key, clock, origin. */
export function describeChange(o: Record<string, unknown>): string {
  const op = typeof o.op === "string" ? o.op : "change";
  const table = typeof o.table === "string" ? o.table : "?";
  const at = typeof o.hlc === "string" ? ` at ${o.hlc}` : "";
  const from = typeof o.origin === "string" ? ` from ${o.origin}` : "";
  return `${op} of ${table} ${describeValue(o.pk)}${at}${from}`.slice(0, 200);
}

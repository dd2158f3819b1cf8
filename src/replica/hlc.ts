/**
 * Clock: the replica's hybrid logical clock, kept in the one-row table
 * `tw_clock`, beside the log it orders.
 *
 * Contract: an HLC is one 64-bit integer, physical milliseconds shifted left by
 * 16 bits plus a counter, so it compares correctly as an integer and, written
 * as 16 hex digits (`formatHlc`), as fixed-width text. A local event takes
 * `max(clock + 1, ms << 16)`, ms being when it was written (a captured write
 * gets its HLC at ingest, from the time its trigger recorded), so the clock
 * never goes back, across restarts too; an observed remote clock moves it forward (`observe`). A remote clock
 * more than `maxDriftMs` ahead of local time is refused (`checkDrift`). Ties
 * between equal HLCs are broken by the origin node id, compared as text.
 * The same row holds the local sequence counter and the capture-suppressed
 * flag the applier sets inside its own transaction.
 */
import { randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import { InvalidArgumentError, StoreError } from "../errors.js";

export const COUNTER_BITS = 16n;
export const DEFAULT_MAX_DRIFT_MS = 60_000;
const HLC_TEXT = /^[0-9a-f]{16}$/;

/**
 * The time of a write, as a capture trigger records it: SQLite's own clock,
 * the same for every call within one statement.
 */
export const SQL_NOW_JD = "julianday('now')";

/**
 * Milliseconds since the epoch of a julian day, in plain SQL: Debian's
 * sqlite3 3.40 has no `subsec`, and triggers must not call custom functions.
 */
export function sqlMillis(julianDay: string): string {
  return `CAST((${julianDay} - 2440587.5) * 86400000 AS INTEGER)`;
}

export function formatHlc(hlc: bigint): string {
  return hlc.toString(16).padStart(16, "0");
}

export function parseHlc(text: unknown): bigint {
  if (typeof text !== "string" || !HLC_TEXT.test(text)) {
    throw new Error(`hlc ${JSON.stringify(text)} is not 16 lowercase hex digits`);
  }
  return BigInt(`0x${text}`);
}

export function hlcMillis(hlc: bigint): number {
  return Number(hlc >> COUNTER_BITS);
}

/** Orders two clocks: HLC first, then origin node id. */
export function compareClocks(aHlc: bigint, aOrigin: string, bHlc: bigint, bOrigin: string): number {
  if (aHlc !== bHlc) return aHlc < bHlc ? -1 : 1;
  return aOrigin === bOrigin ? 0 : aOrigin < bOrigin ? -1 : 1;
}

export class Clock {
  readonly nodeId: string;
  private readonly sql: ReturnType<typeof prepare>;

  /**
   * Reads the node id, writing one the first time: `nodeId` when given, else
   * 16 random hex digits. A database keeps its node id for good; asking for
   * another is refused, because two ids for one history would split its
   * clock.
   */
  constructor(
    db: Database.Database,
    nodeId: string | undefined,
    readonly maxDriftMs: number = DEFAULT_MAX_DRIFT_MS,
  ) {
    this.sql = prepare(db);
    const row = this.sql.read.get() as { node: string } | undefined;
    if (row) {
      if (nodeId !== undefined && nodeId !== row.node) {
        throw new InvalidArgumentError(
          "nodeId",
          `this database's node id is "${row.node}"; a node id is fixed once chosen, so "${nodeId}" cannot replace it`,
        );
      }
      this.nodeId = row.node;
    } else {
      const id = nodeId ?? randomBytes(8).toString("hex");
      this.sql.create.run(id);
      this.nodeId = (this.sql.read.get() as { node: string }).node;
    }
  }

  /** The current clock and sequence counter. */
  read(): { hlc: bigint; seq: bigint } {
    const row = this.sql.read.get() as { hlc: bigint; seq: bigint } | undefined;
    if (!row) throw new StoreError("tw_clock has no row: the replica's clock was deleted");
    return { hlc: row.hlc, seq: row.seq };
  }

  /** One local event: advances the clock and takes the next sequence number. */
  tick(now = Date.now()): { hlc: bigint; seq: bigint } {
    return this.sql.tick.get(BigInt(now)) as { hlc: bigint; seq: bigint };
  }

  /** Moves the clock to at least `hlc` and the sequence counter to at least `seq`. */
  observe(hlc: bigint, seq: bigint): void {
    this.sql.observe.run(hlc, seq);
  }

  /** Throws when `hlc` is more than maxDriftMs ahead of this machine's time. */
  checkDrift(hlc: bigint, now = Date.now()): void {
    const ahead = hlcMillis(hlc) - now;
    if (ahead > this.maxDriftMs) {
      throw new Error(
        `its clock ${formatHlc(hlc)} (${new Date(hlcMillis(hlc)).toISOString()}) is ${ahead} ms ahead of local time, more than maxDriftMs ${this.maxDriftMs}`,
      );
    }
  }

  /**
   * Sets the clock and sequence counter as given, even backwards: only for the
   * clock reset (clock-reset.ts), which has made sure no log entry is newer.
   */
  set(hlc: bigint, seq: bigint): void {
    this.sql.set.run(hlc, seq);
  }

  /** Turns capture off (or back on) for this transaction's own writes. */
  suppress(on: boolean): void {
    this.sql.suppress.run(on ? 1 : 0);
  }
}

function prepare(db: Database.Database) {
  return {
    read: db.prepare("SELECT node, hlc, seq FROM tw_clock WHERE id = 0").safeIntegers(true),
    create: db.prepare("INSERT INTO tw_clock (id, node, hlc, seq, suppress) VALUES (0, ?, 0, 0, 0)"),
    tick: db
      .prepare("UPDATE tw_clock SET hlc = MAX(hlc + 1, ? * 65536), seq = seq + 1 RETURNING hlc, seq")
      .safeIntegers(true),
    observe: db.prepare("UPDATE tw_clock SET hlc = MAX(hlc, ?), seq = MAX(seq, ?)"),
    suppress: db.prepare("UPDATE tw_clock SET suppress = ?"),
    set: db.prepare("UPDATE tw_clock SET hlc = ?, seq = ?"),
  };
}

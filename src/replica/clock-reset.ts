/**
 * Clock reset: the recovery of a replica whose own clock once ran far ahead
 * (the machine's time jumped forward for a while, a VM resumed with a wrong
 * clock). Its local writes were stamped in the future; every peer refuses a
 * change more than maxDriftMs ahead of its own time, and the HLC never goes
 * back, so without this the replica stays refused until real time catches up.
 *
 * Contract: in one write transaction (staged writes ingested first), every log
 * entry of this node's origin stamped beyond the drift window (later than
 * now + maxDriftMs) gets a fresh HLC and sequence number, event by event in
 * its old order; the clock is set to the last of them. That is safe because:
 * - no peer can hold such an entry (each refused it), so none keeps the old
 *   stamp while this node keeps the new one: re-stamping is, for everyone, this
 *   node writing the same values again now;
 * - the new stamps are greater than every entry left in the log (all within
 *   the window), so each re-stamped value still beats what it beat here;
 * - relative order among the re-stamped events is kept (a later update stays
 *   newer than the insert it followed), and so are values, ops and keys;
 * - the new sequence numbers are past every cursor, so each peer receives the
 *   changes on its next sync;
 * - entries within the window are left alone: a peer may have accepted them.
 * A change from another node beyond the window (only possible if this node
 * once accepted it under a wider window) cannot be re-stamped here: the reset
 * refuses, naming that node, and changes nothing.
 */
import type Database from "better-sqlite3";
import { TidewireError } from "../errors.js";
import { type Clock, COUNTER_BITS, formatHlc, hlcMillis } from "./hlc.js";

export interface ClockResetOptions {
  /** Entries further ahead of now than this are re-stamped (default: the replica's maxDriftMs). */
  maxDriftMs?: number;
  /** This machine's time, epoch ms (default Date.now()); tests set it. */
  now?: number;
}

export interface ClockResetResult {
  /** The clock before and after, 16 hex digits each. */
  before: string;
  after: string;
  /** How far ahead of now the clock was, ms (0 if it was not ahead). */
  aheadMs: number;
  /** Local events (changes) given fresh stamps, and the log entries they cover. */
  restamped: number;
  entries: number;
}

export function resetClock(
  db: Database.Database,
  clock: Clock,
  maxDriftMs: number,
  now: number,
): ClockResetResult {
  const sql = prepare(db);
  const { hlc: before, seq } = clock.read();
  const limit = BigInt(Math.floor(now + maxDriftMs) + 1) << COUNTER_BITS;
  const foreign = sql.foreignAhead.get({ node: clock.nodeId, limit }) as
    | { origin: string; hlc: bigint }
    | undefined;
  if (foreign) {
    throw new TidewireError(
      `the log holds a change from node ${foreign.origin} stamped ${new Date(hlcMillis(foreign.hlc)).toISOString()}, more than ${maxDriftMs} ms ahead of now; only that node's own writes can be re-stamped (reset its clock, or give a wider --max-drift), so nothing was changed`,
      "ERR_CLOCK_FOREIGN_AHEAD",
    );
  }
  const kept = sql.maxBelow.get({ limit }) as bigint | null;
  const nowHlc = BigInt(Math.floor(now)) << COUNTER_BITS;
  const base = kept !== null && kept > nowHlc ? kept : nowHlc;
  const events = sql.events.get({ node: clock.nodeId, limit }) as bigint;
  const entries = events > 0n ? sql.restamp.run({ node: clock.nodeId, limit, base, seq }).changes : 0;
  const after = base + events;
  clock.set(after, seq + events);
  return {
    before: formatHlc(before),
    after: formatHlc(after),
    aheadMs: Math.max(0, hlcMillis(before) - now),
    restamped: Number(events),
    entries,
  };
}

function prepare(db: Database.Database) {
  return {
    foreignAhead: db
      .prepare(
        "SELECT origin, hlc FROM tw_log WHERE origin <> :node AND hlc >= :limit ORDER BY hlc DESC LIMIT 1",
      )
      .safeIntegers(true),
    maxBelow: db.prepare("SELECT max(hlc) FROM tw_log WHERE hlc < :limit").pluck().safeIntegers(true),
    events: db
      .prepare("SELECT count(DISTINCT seq) FROM tw_log WHERE origin = :node AND hlc >= :limit")
      .pluck()
      .safeIntegers(true),
    // Event i (in old sequence order) takes hlc base + i and seq seq + i: what i ticks of
    // the clock from base would give. All entries of one event share its new stamp.
    restamp: db
      .prepare(
        `WITH ev AS MATERIALIZED (
           SELECT seq AS old, row_number() OVER (ORDER BY seq) AS i
           FROM (SELECT DISTINCT seq FROM tw_log WHERE origin = :node AND hlc >= :limit)
         )
         UPDATE tw_log SET hlc = :base + ev.i, seq = :seq + ev.i
         FROM ev WHERE tw_log.seq = ev.old AND tw_log.origin = :node AND tw_log.hlc >= :limit`,
      )
      .safeIntegers(true),
  };
}

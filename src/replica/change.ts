/**
 * Change: the form in which change-log entries travel between replicas, and
 * ChangeSet, one page of them.
 *
 * Contract: types only. Kept apart from log.ts so that the log, its pager
 * and every transport can name a Change without importing the log itself.
 */
import type { WireValue } from "./values.js";

export interface Change {
  table: string;
  /**
   * The table's bucket at the sender. `changesSince` always sets it; `apply`
   * needs it only for a table a relay does not track.
   */
  bucket?: string;
  /** The key's values, in key order. */
  pk: WireValue[];
  /** insert: the row entry says the row exists; delete: a tombstone; update: columns only. */
  op: "insert" | "update" | "delete";
  /** Column values written by this event and not yet overwritten (empty for a delete). */
  columns: Record<string, WireValue>;
  /** 16 hex digits: physical ms << 16 | counter. */
  hlc: string;
  /** Node id of the replica where the write happened. */
  origin: string;
  /** The sender's local sequence number. */
  seq: number;
}

export interface ChangeSet {
  changes: Change[];
  /** Pass back to `changesSince` for the next page. */
  cursor: string;
  hasMore: boolean;
}

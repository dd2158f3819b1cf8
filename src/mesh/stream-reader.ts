/**
 * StreamReader: the reading half of a mesh member: one tail per (peer,
 * bucket) stream, what it holds, and its gaps.
 *
 * Contract: `handle` applies the entries one XREAD returned for a stream and
 * moves that stream's cursor in the same SQLite transaction (when the
 * CursorStore lives on the replica's store), so a restart resumes exactly
 * after the last applied id. An entry wholly at or below the cursor is
 * skipped; one that overlaps it is applied (apply is idempotent). An entry
 * whose `since` is beyond the cursor means changes are missing (trimmed, or
 * lost with Redis): it is still applied (the merge does not depend on order),
 * but the log cursor stays and a republish from it is asked of the publisher,
 * again while no progress is made, after `gapRetryMs` and then with doubling
 * waits (see `retryGaps`). A malformed entry, or
 * one the replica refuses, is logged, counted and passed over; nothing of it
 * is applied.
 */

import { exponentialDelay } from "../backoff.js";
import type { CursorStore } from "../cursor-store.js";
import { meshApplied, meshGaps, meshRefused } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import {
  type ChangeEntry,
  decodeEntry,
  formatPosition,
  parsePosition,
  type RawFields,
  type ReadPosition,
  START_ID,
  streamKey,
} from "./stream-entry.js";

export type GapReason = "since" | "gone" | "refused";

/** A gap's retries wait gapRetryMs × 2^n, n at most this (64×: ~11 min at the default 10 s). */
const MAX_BACKOFF_DOUBLINGS = 6;

export interface Gap {
  peer: string;
  bucket: string;
  /** The log cursor the reader asks the publisher to publish again from. */
  from: string;
  reason: GapReason;
}

export interface AppliedEntry {
  peer: string;
  bucket: string;
  streamId: string;
  /** Changes in the entry, and those that won something here. */
  received: number;
  applied: number;
}

export interface RefusedEntry {
  peer: string;
  bucket: string;
  streamId: string;
  error: Error;
}

export interface Tail {
  peer: string;
  bucket: string;
  key: string;
  pos: ReadPosition;
  gap: { until: bigint; requestedAt: number; progressAt: number; retries: number } | null;
}

export interface HandleResult {
  applied: AppliedEntry[];
  refused: RefusedEntry[];
  gaps: Gap[];
}

/** A fill request to send: XADD to the publisher's wants stream. */
export interface FillRequest {
  peer: string;
  bucket: string;
  from: bigint;
}

interface Deps {
  replica: Replica;
  cursors: CursorStore;
  /** The CursorStore writes to the replica's database: cursor and apply share a transaction. */
  atomic: boolean;
  prefix: string;
  gapRetryMs: number;
}

export class StreamReader {
  private readonly tails = new Map<string, Tail>();
  /** Fill requests decided while handling, sent by the transport (Redis calls are async). */
  readonly requests: FillRequest[] = [];

  constructor(private readonly deps: Deps) {}

  /** Starts tailing `peer` in `bucket` from its saved cursor (or the start); false when it already was. */
  add(peer: string, bucket: string): boolean {
    const key = streamKey(this.deps.prefix, bucket, peer);
    if (this.tails.has(key)) return false;
    const saved = this.deps.cursors.get(cursorKey(peer, bucket));
    const pos = (saved && parsePosition(saved)) || { streamId: START_ID, cursor: 0n };
    this.tails.set(key, { peer, bucket, key, pos, gap: null });
    return true;
  }

  /** Stops tailing `peer` in every bucket; returns how many tails went. */
  remove(peer: string): number {
    let n = 0;
    for (const [k, t] of this.tails) if (t.peer === peer && this.tails.delete(k)) n++;
    return n;
  }

  has(peer: string, bucket: string): boolean {
    return this.tails.has(streamKey(this.deps.prefix, bucket, peer));
  }

  list(): Tail[] {
    return [...this.tails.values()];
  }

  /** Applies what XREAD returned for `key`; events are for the caller to emit once it is committed. */
  handle(key: string, entries: Array<[id: string, fields: RawFields]>): HandleResult {
    const out: HandleResult = { applied: [], refused: [], gaps: [] };
    const tail = this.tails.get(key);
    if (!tail || entries.length === 0) return out; // removed while the read was in flight
    const { peer, bucket } = tail;
    // Decoding and checking happen before the write lock is taken.
    const decoded = entries.map(([id, fields]) => {
      try {
        return { id, entry: decodeEntry(fields) as ChangeEntry | null, error: null };
      } catch (err) {
        return { id, entry: null, error: err as Error };
      }
    });
    const { replica, cursors, atomic } = this.deps;
    let gapUntil: bigint | null = null;
    const pos = replica.store.write(() => {
      // Runs again from the top if the store retries the transaction: work on copies.
      out.applied = [];
      out.refused = [];
      gapUntil = null;
      const p = { ...tail.pos };
      for (const { id, entry, error } of decoded) {
        p.streamId = id;
        if (!entry) {
          out.refused.push({ peer, bucket, streamId: id, error: error as Error });
          continue;
        }
        if (entry.cursor <= p.cursor) continue;
        const behind = entry.since > p.cursor;
        try {
          const r = replica.apply(entry.changes);
          out.applied.push({ peer, bucket, streamId: id, received: r.received, applied: r.applied });
        } catch (err) {
          out.refused.push({ peer, bucket, streamId: id, error: err as Error });
          // Well-formed but refused here (a clock too far ahead, say): ask again later.
          gapUntil = max(gapUntil, entry.cursor);
          continue;
        }
        if (behind) gapUntil = max(gapUntil, entry.since);
        else p.cursor = entry.cursor;
      }
      cursors.set(cursorKey(peer, bucket), formatPosition(p));
      if (atomic) cursors.flushDirty();
      return p;
    }, "mesh.read");
    if (!atomic) cursors.flushDirty();
    const now = Date.now();
    if (pos.cursor > tail.pos.cursor && tail.gap) {
      tail.gap.progressAt = now;
      tail.gap.retries = 0;
    }
    tail.pos = pos;
    for (const a of out.applied) meshApplied.inc({ bucket }, a.applied);
    for (const _ of out.refused) meshRefused.inc({ bucket });
    if (gapUntil !== null) this.openGap(tail, gapUntil, out.refused.length ? "refused" : "since", out.gaps);
    if (tail.gap && tail.pos.cursor >= tail.gap.until) tail.gap = null;
    return out;
  }

  /** The stream is gone from Redis: read it again from its start when it comes back, and ask for a fill. */
  streamGone(tail: Tail): Gap | null {
    if (tail.pos.streamId === START_ID || this.tails.get(tail.key) !== tail) return null;
    tail.pos = { ...tail.pos, streamId: START_ID };
    this.deps.cursors.set(cursorKey(tail.peer, tail.bucket), formatPosition(tail.pos));
    meshGaps.inc({ bucket: tail.bucket });
    this.requests.push({ peer: tail.peer, bucket: tail.bucket, from: tail.pos.cursor });
    return { peer: tail.peer, bucket: tail.bucket, from: String(tail.pos.cursor), reason: "gone" };
  }

  /**
   * Asks again for fills that made no progress: after `gapRetryMs`, then
   * twice as long each time up to 64 times as long, until the cursor moves.
   * An entry refused for good (a table this replica lacks) would otherwise
   * have the publisher send everything after the cursor again every
   * `gapRetryMs`, for ever.
   */
  retryGaps(now: number): void {
    for (const t of this.tails.values()) {
      if (!t.gap) continue;
      const base = this.deps.gapRetryMs;
      const wait = exponentialDelay(t.gap.retries, {
        baseMs: base,
        maxMs: base * 2 ** MAX_BACKOFF_DOUBLINGS,
      });
      if (now - Math.max(t.gap.requestedAt, t.gap.progressAt) < wait) continue;
      t.gap.requestedAt = now;
      t.gap.retries++;
      this.requests.push({ peer: t.peer, bucket: t.bucket, from: t.pos.cursor });
    }
  }

  private openGap(tail: Tail, until: bigint, reason: GapReason, gaps: Gap[]): void {
    if (tail.gap) {
      tail.gap.until = max(tail.gap.until, until) as bigint;
      return;
    }
    const now = Date.now();
    tail.gap = { until, requestedAt: now, progressAt: now, retries: 0 };
    meshGaps.inc({ bucket: tail.bucket });
    this.requests.push({ peer: tail.peer, bucket: tail.bucket, from: tail.pos.cursor });
    gaps.push({ peer: tail.peer, bucket: tail.bucket, from: String(tail.pos.cursor), reason });
  }
}

export function cursorKey(peer: string, bucket: string) {
  return { peer, bucket, direction: "pull" as const };
}

function max(a: bigint | null, b: bigint): bigint {
  return a === null || b > a ? b : a;
}

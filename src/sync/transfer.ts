/**
 * The two legs of a sync cycle, push and pull, batch by batch (see
 * SyncManager, which runs them after the handshake).
 *
 * Contract: push sends batches of `changesSince(pushCursor)` (leaving out the
 * hub's own changes and those pulled from it), up to PUSH_DEPTH in flight, and
 * moves the push cursor only on each acknowledgement, taken in order; pull
 * asks for the next page before applying the one in hand, applies each page
 * in one transaction with the hub as its source, then moves the pull cursor.
 * Each cursor is flushed at once, so a crash resumes from the last batch and
 * re-sends at most what was in flight (applying twice changes nothing).
 */
import type { CursorKey, CursorStore } from "../cursor-store.js";
import type { Change } from "../replica/change.js";
import type { Replica } from "../replica/replica.js";
import { inSpan } from "../trace.js";
import { type BatchLimits, fitBatch, ProtocolError, type PullResponse } from "./protocol.js";
import type { CycleResult } from "./sync-options.js";
import type { Transport } from "./transport.js";

/** What one leg needs of its SyncManager. */
export interface Leg {
  replica: Replica;
  transport: Transport;
  cursors: CursorStore;
  /** The hub's node id. */
  hub: string;
  key: CursorKey;
  buckets: string[];
  batchSize: number;
  limits: BatchLimits;
  /** Counts pushed, pulled and applied changes. */
  result: CycleResult;
  /** After each batch: its size, whether more wait, and the leg's cursor after it. */
  progress?: (n: number, hasMore: boolean, cursor: string) => void;
}

/** Push batches in flight at once: one on the hub, one waiting in its socket. */
const PUSH_DEPTH = 2;

interface OutBatch {
  changes: Change[];
  /** The push cursor once the hub holds this batch. */
  cursor: string;
  hasMore: boolean;
}

/**
 * Pushes batch after batch with up to PUSH_DEPTH in flight: the next batch
 * is read and sent while the hub works on the previous ones, so the hub
 * finds the next body waiting. The hub may apply them in any order (apply
 * is order-free); the cursor moves (and is flushed) only on each ack, taken
 * in order, so a failure resumes after the last batch acknowledged in order.
 */
export async function pushAll(leg: Leg): Promise<void> {
  const { key, result, progress } = leg;
  const inflight: Array<{ batch: OutBatch; sending: Promise<{ cursor: string }> }> = [];
  let next: OutBatch | null = outBatch(leg, leg.cursors.getOrStart(key));
  let readFailure: unknown = null;
  for (;;) {
    while (next && next.changes.length > 0 && inflight.length < PUSH_DEPTH) {
      const batch: OutBatch = next;
      next = null;
      const sending = leg.transport.push({
        nodeId: leg.replica.nodeId,
        changes: batch.changes,
        cursor: batch.cursor,
      });
      // Awaited below, in order; a failure meanwhile must not count as unhandled.
      sending.catch(() => {});
      inflight.push({ batch, sending });
      // A turn of the loop lets the request out before the read holds the thread.
      await turn();
      try {
        if (batch.hasMore) next = outBatch(leg, batch.cursor);
      } catch (err) {
        readFailure = err;
      }
    }
    const head = inflight.shift();
    if (!head) break;
    const ack = await head.sending;
    if (ack.cursor !== head.batch.cursor) {
      throw new ProtocolError(`the hub acknowledged cursor ${ack.cursor}, not ${head.batch.cursor}`);
    }
    saveCursor(leg, key, head.batch.cursor);
    result.pushed += head.batch.changes.length;
    progress?.(head.batch.changes.length, head.batch.hasMore, head.batch.cursor);
  }
  if (readFailure) throw readFailure;
  // Only filtered-out entries were left: the cursor still moves past them.
  if (next && next.cursor !== leg.cursors.getOrStart(key)) saveCursor(leg, key, next.cursor);
}

/** The next batch to push after `cursor`, cut to the hub's limits. */
function outBatch(leg: Leg, cursor: string): OutBatch {
  const set = leg.replica.changesSince(cursor, {
    buckets: leg.buckets,
    limit: leg.batchSize,
    excludeOrigin: leg.hub,
    // What was pulled from the hub is not pushed back to it.
    excludeSource: leg.hub,
  });
  const fit = fitBatch(set.changes, leg.limits);
  return {
    changes: fit.changes,
    cursor: fit.cut ? String(fit.changes.at(-1)!.seq) : set.cursor,
    hasMore: set.hasMore || fit.cut,
  };
}

/**
 * Pulls page after page, asking for the next page before applying the one
 * in hand, so the hub serves it meanwhile; the cursor moves after each apply.
 */
export async function pullAll(leg: Leg): Promise<void> {
  const { key, result, progress } = leg;
  const ask = (cursor: string) => {
    const p = leg.transport.pull({
      nodeId: leg.replica.nodeId,
      cursor,
      buckets: leg.buckets,
      limit: leg.batchSize,
    });
    // Awaited later; a failure while the previous page applies must not count as unhandled.
    p.catch(() => {});
    return p;
  };
  let pending: ReturnType<typeof ask> | null = ask(leg.cursors.getOrStart(key));
  while (pending) {
    const page: PullResponse = await pending;
    pending = page.hasMore ? ask(page.cursor) : null;
    // A turn of the loop lets the request out before the apply holds the thread.
    if (pending) await turn();
    if (page.changes.length) {
      const changes = page.changes;
      result.applied += inSpan("tidewire.sync.apply", { "tidewire.sync.changes": changes.length }, () =>
        leg.replica.apply(changes, { from: leg.hub }),
      ).applied;
    }
    saveCursor(leg, key, page.cursor);
    result.pulled += page.changes.length;
    if (page.changes.length || !page.hasMore) progress?.(page.changes.length, page.hasMore, page.cursor);
  }
}

function saveCursor(leg: Leg, key: CursorKey, cursor: string): void {
  leg.cursors.set(key, cursor);
  leg.cursors.flushDirty();
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

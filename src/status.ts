/**
 * Status: what a database holds as a replica, a hub and a queue, read in one
 * place for `tidewire status` and the hub's GET /v1/status (the dashboard).
 *
 * Contract: reads only, on any Store, read-only ones included: staged writes
 * are counted, not ingested, and nothing is migrated, so a file that is not
 * (yet) a replica is reported as such: capture a schema change broke is
 * reported (`capture`), not restored (the next ingest or sync does that).
 * Peers' tokens and remote targets' secrets are never part of it.
 */

import { type Cursor, CursorStore } from "./cursor-store.js";
import { outboxCounts } from "./outbox/counts.js";
import type { OutboxCounts } from "./outbox/types.js";
import { Peers, type PublicPeer, publicPeer } from "./peers/peers.js";
import { Queue } from "./queue/queue.js";
import type { QueueStats } from "./queue/types.js";
import { type RemoteStatus, Remotes } from "./remote/registry.js";
import { Catalog } from "./replica/catalog.js";
import { type ConflictCounts, Conflicts } from "./replica/conflicts.js";
import { type CaptureStatus, inspectCapture } from "./replica/evolve.js";
import { formatHlc, hlcMillis } from "./replica/hlc.js";
import { COUNT_STAGED } from "./replica/ingest.js";
import { type Lag, type LagQuery, readLag } from "./replica/lag.js";
import { ChangeLog } from "./replica/log.js";
import type { ReplicaStats } from "./replica/replica.js";
import { type BucketCount, bucketCounts, type TableCount, tableCounts } from "./replica/table-counts.js";
import { describeTracked, type TrackedTableInfo } from "./replica/track.js";
import { type StorageStats, storageStats } from "./storage.js";
import type { Store } from "./store.js";

export interface Status {
  nodeId: string | null;
  clock: { hlc: string; time: string } | null;
  buckets: Record<string, string[]>;
  tables: TrackedTableInfo[];
  /**
   * Per tracked table: whether capture is installed, the columns tracked
   * against those present, and whether a schema change awaits reconciliation
   * (`state`, with `problem` saying what to run when capture cannot restore itself).
   */
  capture: CaptureStatus[];
  log: ReplicaStats | null;
  /** Each with its lag (src/replica/lag.ts) when it is a push cursor: a pull cursor's head is the peer's. */
  cursors: Array<Cursor & { lag: Lag | null }>;
  /** Per tracked (or relayed) table and per bucket: rows and log entries (src/replica/table-counts.ts). */
  counts: { tables: TableCount[]; buckets: BucketCount[] };
  /** The lag of each reader given to readStatus (`readers`, by key): a hub's clients. */
  readerLag: Record<string, Lag | null>;
  /** Tokens left out (see `tidewire peers`). */
  peers: PublicPeer[];
  queues: Record<string, QueueStats>;
  /** Remote targets the daemon syncs (see `tidewire remote list`), secrets left out; empty before migration 13. */
  remotes: RemoteStatus[];
  /** What conflict rules overrode and what waits in quarantine (see `tidewire conflicts`); null before migration 9. */
  conflicts: ConflictCounts | null;
  /** The file's size, free pages and auto-vacuum mode (see src/storage.ts). */
  storage: StorageStats;
  /** Messages per state in each outbox (spool) that holds any. */
  outboxes: Record<string, OutboxCounts>;
}

export interface StatusOptions {
  /** Readers of the log whose lag to report (`readerLag`): a hub passes its clients' last pull cursors. */
  readers?: LagQuery[];
}

export function readStatus(store: Store, options: StatusOptions = {}): Status {
  const status: Status = {
    nodeId: null,
    clock: null,
    buckets: {},
    tables: [],
    capture: [],
    log: null,
    cursors: [],
    counts: { tables: [], buckets: [] },
    readerLag: {},
    peers: [],
    queues: {},
    remotes: [],
    conflicts: null,
    storage: storageStats(store),
    outboxes: outboxCounts(store),
  };
  if (store.hasTable("tw_clock") && store.hasTable("tw_log")) {
    const row = store.db.prepare("SELECT node, hlc FROM tw_clock WHERE id = 0").safeIntegers(true).get() as
      | { node: string; hlc: bigint }
      | undefined;
    if (row) {
      status.nodeId = row.node;
      status.clock = { hlc: formatHlc(row.hlc), time: new Date(hlcMillis(row.hlc)).toISOString() };
    }
    const catalog = new Catalog(store.db);
    status.tables = catalog.list().map(describeTracked);
    status.capture = catalog.list().map((t) => inspectCapture(store, t, store.path));
    for (const t of status.tables) {
      const list = status.buckets[t.bucket] ?? [];
      list.push(t.table);
      status.buckets[t.bucket] = list;
    }
    // Read-only: staged writes are counted, not ingested (any replica method does that).
    const staged = store.hasTable("tw_pending")
      ? (store.db.prepare(COUNT_STAGED).pluck().get() as number)
      : 0;
    status.log = { ...new ChangeLog(store.db, catalog).stats(), staged };
    const tables = tableCounts(store.db, catalog);
    status.counts = { tables, buckets: bucketCounts(tables) };
    if (options.readers?.length) status.readerLag = Object.fromEntries(readLag(store.db, options.readers));
  }
  if (store.hasTable("tw_conflicts")) status.conflicts = new Conflicts(store.db).counts();
  if (store.hasTable("tw_cursors"))
    status.cursors = withLag(store, new CursorStore(store, { flushIntervalMs: 0 }).getAll());
  if (store.hasTable("tw_peers")) status.peers = new Peers(store).list().map(publicPeer);
  if (store.hasTable("tw_remotes")) status.remotes = new Remotes(store).status();
  if (store.hasTable("tw_jobs")) {
    const names = store.db
      .prepare("SELECT DISTINCT queue FROM tw_jobs ORDER BY queue")
      .pluck()
      .all() as string[];
    for (const name of names) status.queues[name] = new Queue(store, name).stats();
  }
  return status;
}

/**
 * Push cursors are positions in this log: their lag is one readLag for all of
 * them. A cursor's bucket is SyncManager's key for its set of buckets; a set
 * too long for it is hashed, and counted over every bucket (an upper bound).
 */
function withLag(store: Store, cursors: Cursor[]): Array<Cursor & { lag: Lag | null }> {
  const pushes = cursors.filter((c) => c.direction === "push");
  const lag =
    pushes.length > 0 && store.hasTable("tw_log")
      ? readLag(
          store.db,
          pushes.map((c) => ({
            key: `${c.peer}\u0000${c.bucket}`,
            cursor: c.value,
            buckets: c.bucket === "*" || c.bucket.startsWith("sha256:") ? null : c.bucket.split(","),
            node: c.peer,
          })),
        )
      : new Map<string, Lag | null>();
  return cursors.map((c) => ({
    ...c,
    lag: c.direction === "push" ? (lag.get(`${c.peer}\u0000${c.bucket}`) ?? null) : null,
  }));
}

/**
 * Status: what a database holds as a replica, a hub and a queue, read in one
 * place for `tidewire status` and the hub's GET /v1/status (the dashboard).
 *
 * Contract: reads only, on any Store, read-only ones included: staged writes
 * are counted, not ingested, and nothing is migrated, so a file that is not
 * (yet) a replica is reported as such: capture a schema change broke is
 * reported (`capture`), not restored (the next ingest or sync does that).
 * Peers' tokens and remote targets' secrets are never part of it. It runs no
 * SQL of its own: each part is its owner's answer (replica/report.ts, the
 * queue, the cursor store, the peers and remotes registries, the outbox).
 */

import { type Cursor, CursorStore } from "./cursor-store.js";
import { outboxCounts } from "./outbox/counts.js";
import type { OutboxCounts } from "./outbox/types.js";
import { Peers, type PublicPeer } from "./peers/peers.js";
import { queueNames } from "./queue/admin.js";
import { Queue } from "./queue/queue.js";
import type { QueueStats } from "./queue/types.js";
import { type RemoteStatus, Remotes } from "./remote/registry.js";
import type { ConflictCounts } from "./replica/conflicts.js";
import type { CaptureStatus } from "./replica/evolve.js";
import type { Lag, LagQuery } from "./replica/lag.js";
import type { ReplicaStats } from "./replica/replica.js";
import { conflictCounts, readersLag, readReplica } from "./replica/report.js";
import type { BucketCount, TableCount } from "./replica/table-counts.js";
import type { TrackedTableInfo } from "./replica/track.js";
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
  const replica = readReplica(store, options.readers);
  const queues: Record<string, QueueStats> = {};
  for (const name of queueNames(store)) queues[name] = new Queue(store, name).stats();
  return {
    nodeId: replica?.nodeId ?? null,
    clock: replica?.clock ?? null,
    buckets: replica?.buckets ?? {},
    tables: replica?.tables ?? [],
    capture: replica?.capture ?? [],
    log: replica?.log ?? null,
    cursors: withLag(store, CursorStore.readAll(store)),
    counts: replica?.counts ?? { tables: [], buckets: [] },
    readerLag: replica?.readerLag ?? {},
    peers: Peers.listPublic(store),
    queues,
    remotes: Remotes.statusOf(store),
    conflicts: conflictCounts(store),
    storage: storageStats(store),
    outboxes: outboxCounts(store),
  };
}

/**
 * Push cursors are positions in this log: their lag is one readLag for all of
 * them. A cursor's bucket is SyncManager's key for its set of buckets; a set
 * too long for it is hashed, and counted over every bucket (an upper bound).
 */
function withLag(store: Store, cursors: Cursor[]): Array<Cursor & { lag: Lag | null }> {
  const pushes = cursors.filter((c) => c.direction === "push");
  const lag = readersLag(
    store,
    pushes.map((c) => ({
      key: `${c.peer}\u0000${c.bucket}`,
      cursor: c.value,
      buckets: c.bucket === "*" || c.bucket.startsWith("sha256:") ? null : c.bucket.split(","),
      node: c.peer,
    })),
  );
  return cursors.map((c) => ({
    ...c,
    lag: c.direction === "push" ? (lag.get(`${c.peer}\u0000${c.bucket}`) ?? null) : null,
  }));
}

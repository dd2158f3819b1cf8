/**
 * The daemon's peer work, as jobs on its own queue: `PingPeer` and `SyncBucket`,
 * and the two periodic jobs that enqueue them.
 *
 * Contract: every `pingIntervalMs` one PingPeer per peer with an address is
 * enqueued, and every `syncIntervalMs` one SyncBucket per (peer, bucket) of
 * each such peer that is not down; each carries a dedup key, so at most one
 * per peer (or per peer and bucket) is pending or running. PingPeer GETs the
 * peer's /healthz within `pingTimeoutMs` and marks it up (with the round-trip
 * time) or down; it never fails, since "down" is its answer. SyncBucket runs
 * one SyncManager cycle (push, then pull) of that bucket against the peer's
 * hub with the peer's token; a failure throws, so the queue retries it with
 * `syncBackoff` (a refusal the hub would repeat, such as a bad token, fails
 * the job at once instead). Being jobs, both survive restarts and show in
 * `tidewire jobs list`. Pings outrank syncs (see PRIORITY).
 */
import type { CursorStore } from "../cursor-store.js";
import type { Logger } from "../log.js";
import { checkPeerId, cursorNames, type Peer, type Peers } from "../peers/peers.js";
import { validateBackoff } from "../queue/backoff.js";
import type { Queue } from "../queue/queue.js";
import type { BackoffOptions, Job } from "../queue/types.js";
import { type Handlers, UnrecoverableError } from "../queue/worker.js";
import type { Replica } from "../replica/replica.js";
import { type CycleResult, SyncManager } from "../sync/sync-manager.js";
import { HubRefusedError } from "../sync/transport.js";
import { HttpTransport } from "../sync/transports/http.js";
import { checkInteger, checkName } from "../validate.js";

export const PING_PEER = "PingPeer";
export const SYNC_BUCKET = "SyncBucket";
/** The periodic jobs (name and type alike) that fan out into PingPeer and SyncBucket jobs. */
export const PING_PEERS = "tidewire.pingPeers";
export const SYNC_PEERS = "tidewire.syncPeers";
export const PEER_JOB_TYPES: readonly string[] = [PING_PEER, SYNC_BUCKET, PING_PEERS, SYNC_PEERS];

/**
 * Higher runs first. A ping is one cheap request, while a sync may hold a
 * worker slot until its timeout; pings go first so that a backlog of syncs
 * (say, to a peer that hangs) cannot keep liveness stale, and liveness decides
 * which syncs are scheduled at all. The fan-out jobs go before both: they only
 * write a few rows.
 */
export const PRIORITY = { fanOut: 30, ping: 20, sync: 10 } as const;

export interface PeerJobOptions {
  /** How often each (peer, bucket) is synced, ms (default 30 000). */
  syncIntervalMs?: number;
  /** How often each peer is pinged, ms (default 15 000). */
  pingIntervalMs?: number;
  /** A ping not answered within this is a down peer, ms (default 5 000). */
  pingTimeoutMs?: number;
  /** A sync call not answered within this fails the attempt, ms (default 30 000). */
  syncTimeoutMs?: number;
  /** Retry delays of a failed SyncBucket (default 1 s doubling up to 5 min, ±20%). */
  syncBackoff?: BackoffOptions;
  /** Attempts of a SyncBucket job before it fails for good (default 8); the next period enqueues another. */
  syncMaxAttempts?: number;
}

export interface PingPeerPayload {
  peer: string;
}

export interface SyncBucketPayload {
  peer: string;
  bucket: string;
}

interface Resolved {
  syncIntervalMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  syncTimeoutMs: number;
  syncBackoff: BackoffOptions;
  syncMaxAttempts: number;
}

/** Checks the options (all before anything is written) and fills in the defaults. */
export function peerJobOptions(o: PeerJobOptions = {}): Resolved {
  validateBackoff("syncBackoff", o.syncBackoff);
  return {
    syncIntervalMs: checkInteger("syncIntervalMs", o.syncIntervalMs ?? 30_000, 1),
    pingIntervalMs: checkInteger("pingIntervalMs", o.pingIntervalMs ?? 15_000, 1),
    pingTimeoutMs: checkInteger("pingTimeoutMs", o.pingTimeoutMs ?? 5_000, 1),
    syncTimeoutMs: checkInteger("syncTimeoutMs", o.syncTimeoutMs ?? 30_000, 1),
    syncBackoff: { baseMs: 1000, maxMs: 300_000, ...o.syncBackoff },
    syncMaxAttempts: checkInteger("syncMaxAttempts", o.syncMaxAttempts ?? 8, 1),
  };
}

/** Registers (or updates) the two periodic fan-out jobs on the queue. */
export function schedulePeerJobs(queue: Queue, options: Resolved): void {
  queue.every(PING_PEERS, options.pingIntervalMs, PING_PEERS, {}, { priority: PRIORITY.fanOut });
  queue.every(SYNC_PEERS, options.syncIntervalMs, SYNC_PEERS, {}, { priority: PRIORITY.fanOut });
}

/** Dedup keys. A peer id never holds a "/" (see checkPeerId), so the bucket after it is unambiguous. */
export const pingKey = (peer: string) => `${PING_PEER}:${peer}`;
export const syncKey = (peer: string, bucket: string) => `${SYNC_BUCKET}:${peer}/${bucket}`;

export interface PeerJobContext {
  replica: Replica;
  queue: Queue;
  peers: Peers;
  /** The cursors the sync cycles keep (one CursorStore for the daemon, so `peers.remove` reaches its cache). */
  cursors: CursorStore;
  logger: Logger;
  options: Resolved;
  /** Called after a SyncBucket cycle pulled changes (the daemon queues DownloadPins for pins they name). */
  afterPull?: () => void;
  /** Called after every SyncBucket cycle that succeeded (the daemon's history counts it). */
  onSynced?: (peer: string, result: CycleResult) => void;
}

export function peerJobHandlers(ctx: PeerJobContext): Handlers {
  const { queue, peers, options } = ctx;
  return {
    [PING_PEERS]: () => {
      const due = peers.list().filter((p) => p.address !== null);
      queue.addMany(
        due.map((p) => ({
          type: PING_PEER,
          payload: { peer: p.id } satisfies PingPeerPayload,
          options: { priority: PRIORITY.ping, key: pingKey(p.id), maxAttempts: 1 },
        })),
      );
    },
    [SYNC_PEERS]: () => {
      const due = peers.list().filter((p) => p.address !== null && p.state !== "down");
      queue.addMany(
        due.flatMap((p) =>
          p.buckets.map((bucket) => ({
            type: SYNC_BUCKET,
            payload: { peer: p.id, bucket } satisfies SyncBucketPayload,
            options: {
              priority: PRIORITY.sync,
              key: syncKey(p.id, bucket),
              maxAttempts: options.syncMaxAttempts,
              backoff: options.syncBackoff,
            },
          })),
        ),
      );
    },
    [PING_PEER]: (job: Job<PingPeerPayload>) => pingPeer(ctx, job),
    [SYNC_BUCKET]: (job: Job<SyncBucketPayload>) => syncBucket(ctx, job),
  };
}

async function pingPeer(ctx: PeerJobContext, job: Job<PingPeerPayload>): Promise<void> {
  const peer = peerOf(ctx.peers, job);
  if (!peer?.address) return;
  const started = performance.now();
  let error: string;
  try {
    const res = await fetch(new URL("healthz", `${peer.address}/`), {
      signal: AbortSignal.timeout(ctx.options.pingTimeoutMs),
    });
    await res.arrayBuffer();
    if (res.ok) {
      const rttMs = performance.now() - started;
      if (ctx.peers.markUp(peer.id, rttMs) && peer.state !== "up")
        ctx.logger.info({ peer: peer.id, address: peer.address, rttMs }, `peer ${peer.id} is up`);
      return;
    }
    error = `GET /healthz answered HTTP ${res.status}`;
  } catch (err) {
    error = describe(err);
  }
  if (ctx.peers.markDown(peer.id, error) && peer.state !== "down")
    ctx.logger.warn({ peer: peer.id, address: peer.address, error }, `peer ${peer.id} is down`);
}

async function syncBucket(ctx: PeerJobContext, job: Job<SyncBucketPayload>): Promise<void> {
  const peer = peerOf(ctx.peers, job);
  const bucket = checkPayload(() => checkName("bucket", job.payload.bucket));
  // The peer was removed, lost its address or left the bucket since the job was queued.
  if (!peer?.address || !peer.buckets.includes(bucket)) return;
  const transport = new HttpTransport(peer.address, {
    token: peer.token ?? undefined,
    timeoutMs: ctx.options.syncTimeoutMs,
    // The queue's backoff does the retrying; one quick retry covers a dropped keep-alive socket.
    retries: 1,
  });
  try {
    // Another process (`tidewire peers remove`) may have deleted this peer's cursors from the file.
    ctx.cursors.reload();
    const manager = new SyncManager(ctx.replica, transport, { buckets: [bucket], cursors: ctx.cursors });
    const result = await manager.syncOnce().catch((err: unknown) => {
      // A refusal that the same request would meet again (bad token, bucket out of scope): retrying
      // in seconds cannot help, so the job fails now and the next period tries afresh.
      if (err instanceof HubRefusedError && err.permanent)
        throw new UnrecoverableError(`peer ${peer.id} refused the sync: ${err.message}`);
      throw err;
    });
    ctx.onSynced?.(peer.id, result);
    // The node id the hub keys this replica's cursors by, so removing the peer finds them.
    const hubNodeId = manager.hub ?? undefined;
    if (!ctx.peers.get(peer.id)) {
      // Removed while this cycle ran, which wrote its cursors again after `remove` deleted them.
      for (const name of cursorNames({ ...peer, nodeId: hubNodeId ?? peer.nodeId }))
        ctx.cursors.deletePeer(name);
      return;
    }
    if (hubNodeId && hubNodeId !== peer.nodeId) ctx.peers.noteNodeId(peer.id, hubNodeId);
    if (result.pushed || result.pulled)
      ctx.logger.info({ peer: peer.id, bucket, ...result }, `synced bucket ${bucket} with peer ${peer.id}`);
    if (result.pulled) ctx.afterPull?.();
  } finally {
    await transport.close();
  }
}

/** The peers to fetch pins from: those with an address not known to be down, each with its token. */
export function peerPinSources(peers: Peers): Array<{ url: string; token?: string }> {
  return peers
    .list()
    .filter((p) => p.address !== null && p.state !== "down")
    .map((p) => ({ url: p.address as string, token: p.token ?? undefined }));
}

function peerOf(peers: Peers, job: Job<{ peer: string }>): Peer | undefined {
  return peers.get(checkPayload(() => checkPeerId(job.payload?.peer)));
}

/** A payload that can never work fails its job at once, without retries. */
export function checkPayload<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw new UnrecoverableError(`bad payload: ${(err as Error).message}`);
  }
}

/** fetch says only "fetch failed"; the reason is in its cause. */
function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === "TimeoutError") return "GET /healthz timed out";
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause ? `${e.message}: ${cause}` : String(e?.message ?? err);
}

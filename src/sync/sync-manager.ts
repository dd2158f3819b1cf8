/**
 * SyncManager: keeps one Replica in sync with a hub through a Transport.
 *
 * Contract: a cycle handshakes once (a refused handshake, such as another
 * protocol version, is a ProtocolError), pushes every local change the hub
 * has not acknowledged (leaving out changes whose origin is the hub and those
 * pulled from it: pulled batches are applied with the hub as their source), then
 * pulls every change the hub has for the buckets and applies it, batch by
 * batch. A cursor moves only once its batch is durable on the other side:
 * the push cursor after the hub's acknowledgement, the pull cursor after the
 * local apply committed, and it is flushed at once, so a crash resumes from
 * the last batch and re-sends at most one (applying twice changes nothing).
 * `start` runs cycles every `intervalMs`, and after a failure waits
 * min(max, initial * multiplier^(failures-1)) with +-jitter instead; the loop
 * re-arms after every cycle whatever happened. A live notification from the
 * transport runs a cycle at once. `stop` stops the loop, waits for the cycle
 * in flight and flushes cursors. Events: "synced" (a CycleResult), "failed"
 * (the error, and the delay before the next try), "progress", "status".
 */
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { type CursorKey, CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import { syncChanges, syncCycleDuration, syncCycles, syncLastSuccess } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import { DEFAULT_BUCKET } from "../replica/track.js";
import { detached, inSpan } from "../trace.js";
import { CAPABILITIES, DEFAULT_LIMITS, PROTOCOL_VERSION, ProtocolError } from "./protocol.js";
import { pullAll, pushAll } from "./transfer.js";
import { HubRefusedError, type Transport } from "./transport.js";

export type SyncDirection = "push" | "pull" | "both";

export interface RetryOptions {
  /** First delay after a failure, ms (default 1000). */
  initialMs?: number;
  /** Longest delay, ms (default 60 000). */
  maxMs?: number;
  /** Growth per consecutive failure (default 2). */
  multiplier?: number;
  /** +- this fraction of the delay at random (default 0.2). */
  jitter?: number;
}

export interface SyncManagerOptions {
  direction?: SyncDirection;
  /** Changes per batch (default 1000; the hub may lower it). */
  batchSize?: number;
  /** Buckets to sync (default: every bucket this replica tracks, or "default"). */
  buckets?: string[];
  /** Pause between cycles of the background loop, ms (default 5000). */
  intervalMs?: number;
  retry?: RetryOptions;
  /** Where cursors are kept (default: a CursorStore on the replica's store). */
  cursors?: CursorStore;
}

export type SyncState = "idle" | "syncing" | "error";

export interface SyncStatus {
  state: SyncState;
  /** The last failure's message while state is "error". */
  message?: string;
  /** Epoch ms of the last cycle that succeeded. */
  lastSuccessAt?: number;
  /** Consecutive failed cycles. */
  failures: number;
  /** Epoch ms the background loop will try next, when it is running. */
  nextAt?: number;
}

export interface CycleResult {
  pushed: number;
  pulled: number;
  /** Pulled changes that won at least one entry here. */
  applied: number;
  durationMs: number;
}

/** Where a leg of an initial sync stands after a batch; cursors are sequence numbers. */
export interface SyncPosition {
  direction: "push" | "pull";
  /** The leg's cursor when it started, and after this batch. */
  start: string;
  cursor: string;
  /**
   * The last sequence number of the log the leg reads when it started: this
   * replica's for push, the hub's for pull (when the hub says; see
   * capability "head"). The leg ends at or before it, unless writes go on.
   */
  head?: string;
}

export interface InitialSyncOptions {
  /** After every batch: its size, the changes moved so far, whether more are waiting, and where the leg stands. */
  onProgress?: (batchSize: number, total: number, hasMore: boolean, position: SyncPosition) => void;
}

type Events = {
  synced: [CycleResult];
  failed: [error: Error, retryInMs: number | undefined];
  progress: [batchSize: number, total: number, hasMore: boolean, position: SyncPosition];
  status: [SyncStatus];
};

const RETRY_DEFAULTS: Required<RetryOptions> = { initialMs: 1000, maxMs: 60_000, multiplier: 2, jitter: 0.2 };

export class SyncManager extends EventEmitter<Events> {
  readonly direction: SyncDirection;
  readonly buckets: string[];
  readonly intervalMs: number;
  readonly retry: Required<RetryOptions>;
  private batchSize: number;
  private readonly cursors: CursorStore;
  private hubNodeId: string | null = null;
  /** The hub's last sequence number at the last handshake, if it said. */
  private hubHead: string | undefined;
  private live = false;
  private unsubscribe: (() => void) | null = null;
  private running: Promise<CycleResult> | null = null;
  private queued: Promise<CycleResult> | null = null;
  private limits = DEFAULT_LIMITS;
  private retryIn = 0;
  private timer: NodeJS.Timeout | null = null;
  private keepAlive: NodeJS.Timeout | null = null;
  private started = false;
  private failures = 0;
  private current: SyncStatus = { state: "idle", failures: 0 };

  constructor(
    readonly replica: Replica,
    readonly transport: Transport,
    options: SyncManagerOptions = {},
  ) {
    super();
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("options", "must be an object");
    const direction = options.direction ?? "both";
    if (!["push", "pull", "both"].includes(direction)) {
      throw new InvalidArgumentError(
        "direction",
        `must be push, pull or both, got ${JSON.stringify(direction)}`,
      );
    }
    this.direction = direction;
    this.batchSize = positive("batchSize", options.batchSize ?? DEFAULT_LIMITS.maxRows);
    this.intervalMs = positive("intervalMs", options.intervalMs ?? 5000);
    const retry = { ...RETRY_DEFAULTS, ...options.retry };
    positive("retry.initialMs", retry.initialMs);
    positive("retry.maxMs", retry.maxMs);
    if (!(retry.multiplier >= 1)) throw new InvalidArgumentError("retry.multiplier", "must be >= 1");
    if (!(retry.jitter >= 0 && retry.jitter < 1))
      throw new InvalidArgumentError("retry.jitter", "must be in [0, 1)");
    this.retry = retry;
    const buckets = options.buckets ?? [...new Set(replica.tables().map((t) => t.bucket))].sort();
    if (!Array.isArray(buckets) || buckets.some((b) => typeof b !== "string" || b.trim() === "")) {
      throw new InvalidArgumentError("buckets", "must be an array of bucket names");
    }
    this.buckets = buckets.length ? [...new Set(buckets)].sort() : [DEFAULT_BUCKET];
    this.cursors = options.cursors ?? new CursorStore(replica.store, { flushIntervalMs: 0 });
  }

  get status(): SyncStatus {
    return { ...this.current };
  }

  /** The node id the hub answered the last handshake with (null before one); cursors are kept under it. */
  get hub(): string | null {
    return this.hubNodeId;
  }

  /** One cycle now; calls while a cycle runs share one more cycle after it, which sees their writes. */
  syncOnce(): Promise<CycleResult> {
    if (this.running) {
      this.queued ??= this.running
        .catch(() => {})
        .then(() => {
          this.queued = null;
          return this.syncOnce();
        });
      return this.queued;
    }
    this.running = this.cycle().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Drains both directions with a progress report after every batch; resumes where a crash left it. */
  async initialSync(options: InitialSyncOptions = {}): Promise<CycleResult> {
    const onProgress = options.onProgress;
    if (onProgress !== undefined && typeof onProgress !== "function")
      throw new InvalidArgumentError("onProgress", "must be a function");
    let total = 0;
    const progress = (n: number, hasMore: boolean, position: SyncPosition) => {
      total += n;
      onProgress?.(n, total, hasMore, position);
      this.emit("progress", n, total, hasMore, position);
    };
    while (this.running) await this.running.catch(() => {});
    // A fresh handshake, so the hub's head is today's.
    this.hubNodeId = null;
    this.running = this.cycle(progress).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Starts the background loop (and the live subscription, if the transport has one). */
  start(): void {
    if (this.started) return;
    this.started = true;
    // A started loop keeps its process alive even while a call waits on a socket Node does not count.
    this.keepAlive = setInterval(() => {}, 60_000);
    if (this.transport.subscribe) {
      this.unsubscribe = this.transport.subscribe(this.buckets, () => {
        if (this.started && this.direction !== "push") this.kick();
      });
    }
    this.kick();
  }

  /** Stops the loop, waits for the cycle in flight, flushes cursors. Idempotent. */
  async stop(): Promise<void> {
    this.started = false;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.running || this.queued) await (this.queued ?? this.running)?.catch(() => {});
    this.cursors.flushDirty();
    this.setStatus({ ...this.current, nextAt: undefined });
  }

  /** Runs a cycle now, then re-arms the timer whatever happened. */
  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    detached(() => this.syncOnce())
      .then(
        () => this.arm(this.intervalMs),
        () => this.arm(this.retryIn),
      )
      .catch(() => {});
  }

  /**
   * Sets the next cycle's timer, even while another cycle runs (its firing
   * then queues one more): a loop whose timer was skipped would leave nothing
   * to wake it, and a CLI process with no timer exits.
   */
  private arm(delay: number): void {
    if (!this.started) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), delay);
    this.setStatus({ ...this.current, nextAt: Date.now() + delay });
  }

  private backoff(): number {
    const { initialMs, maxMs, multiplier, jitter } = this.retry;
    const base = Math.min(maxMs, initialMs * multiplier ** Math.max(0, this.failures - 1));
    return Math.max(0, Math.round(base * (1 + jitter * (2 * Math.random() - 1))));
  }

  /** A cycle in a span of its own (when tracing is on), with its push and pull legs as children. */
  private cycle(
    progress?: (n: number, hasMore: boolean, position: SyncPosition) => void,
  ): Promise<CycleResult> {
    return inSpan(
      "tidewire.sync.cycle",
      { "tidewire.peer": this.transport.peer, "tidewire.sync.direction": this.direction },
      async (span) => {
        const result = await this.runCycle(progress);
        span?.set({
          "tidewire.sync.pushed": result.pushed,
          "tidewire.sync.pulled": result.pulled,
          "tidewire.sync.applied": result.applied,
        });
        return result;
      },
    );
  }

  private async runCycle(
    progress?: (n: number, hasMore: boolean, position: SyncPosition) => void,
  ): Promise<CycleResult> {
    const started = performance.now();
    this.setStatus({ ...this.current, state: "syncing" });
    const peer = this.transport.peer;
    const bucketLabel = this.buckets.join(",");
    const result: CycleResult = { pushed: 0, pulled: 0, applied: 0, durationMs: 0 };
    // A cycle keeps its process alive by itself (stop() drops the loop's handle
    // before waiting for it, and --once never had one): a call may wait on a
    // socket the fetch pool holds unref'd, and AbortSignal.timeout's timer is
    // unref'd too, so nothing else would keep Node from exiting (code 13).
    const hold = setInterval(() => {}, 60_000);
    try {
      const hub = await this.handshake();
      const leg = {
        replica: this.replica,
        transport: this.transport,
        cursors: this.cursors,
        hub,
        buckets: this.buckets,
        batchSize: this.batchSize,
        limits: this.limits,
        result,
      };
      // Each leg reports where it stands against the head of the log it reads.
      const report = (
        direction: SyncPosition["direction"],
        key: CursorKey,
        head: () => string | undefined,
      ) => {
        if (!progress) return undefined;
        const start = this.cursors.getOrStart(key);
        const position = { direction, start, head: head() };
        return (n: number, hasMore: boolean, cursor: string) => progress(n, hasMore, { ...position, cursor });
      };
      if (this.direction !== "pull") {
        const key = this.key(hub, "push");
        const push = { ...leg, key, progress: report("push", key, () => this.replica.head()) };
        await inSpan("tidewire.sync.push", {}, () => pushAll(push));
      }
      if (this.direction !== "push") {
        const key = this.key(hub, "pull");
        const pull = { ...leg, key, progress: report("pull", key, () => this.hubHead) };
        await inSpan("tidewire.sync.pull", {}, () => pullAll(pull));
      }
      result.durationMs = performance.now() - started;
      this.failures = 0;
      const now = Date.now();
      this.setStatus({ state: "idle", failures: 0, lastSuccessAt: now });
      syncCycles.labels(peer, bucketLabel, "ok").inc();
      syncLastSuccess.labels(peer).set(now / 1000);
      syncCycleDuration.labels(peer).observe(result.durationMs / 1000);
      this.emit("synced", result);
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.failures++;
      // A dropped link may come back as another hub: shake hands again.
      this.hubNodeId = null;
      syncCycles.labels(peer, bucketLabel, "error").inc();
      syncCycleDuration.labels(peer).observe((performance.now() - started) / 1000);
      this.setStatus({ ...this.current, state: "error", message: error.message, failures: this.failures });
      // A refusal the same request would meet again (a 4xx: a constraint, a bucket out of scope) is
      // not a server's hiccup: retrying it at the short backoff only repeats it, so wait the longest.
      this.retryIn = error instanceof HubRefusedError && error.permanent ? this.retry.maxMs : this.backoff();
      this.emit("failed", error, this.started ? this.retryIn : undefined);
      throw error;
    } finally {
      clearInterval(hold);
      syncChanges.labels(peer, bucketLabel, "push").inc(result.pushed);
      syncChanges.labels(peer, bucketLabel, "pull").inc(result.pulled);
    }
  }

  private async handshake(): Promise<string> {
    if (this.hubNodeId) return this.hubNodeId;
    let answer: Awaited<ReturnType<Transport["handshake"]>>;
    try {
      answer = await this.transport.handshake({
        nodeId: this.replica.nodeId,
        protocolVersion: PROTOCOL_VERSION,
        buckets: this.buckets,
        capabilities: [...CAPABILITIES],
      });
    } catch (err) {
      if (err instanceof HubRefusedError && err.code === "ERR_PROTOCOL_VERSION") {
        throw new ProtocolError(`the hub refused the handshake: ${err.message}`, err.code);
      }
      throw err;
    }
    if (!answer.accepted || answer.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `the hub refused the handshake: ${answer.reason ?? `it speaks protocol version ${answer.protocolVersion}, this client ${PROTOCOL_VERSION}`}`,
        "ERR_PROTOCOL_VERSION",
      );
    }
    this.batchSize = Math.min(this.batchSize, answer.limits.maxRows);
    this.limits = answer.limits;
    this.live = answer.capabilities.includes("live");
    this.hubHead = answer.head;
    this.hubNodeId = answer.hubNodeId;
    return answer.hubNodeId;
  }

  private key(hub: string, direction: "push" | "pull"): CursorKey {
    return { peer: hub, bucket: bucketKey(this.buckets), direction };
  }

  private setStatus(s: SyncStatus): void {
    this.current = s;
    this.emit("status", this.status);
  }

  /** True when the hub offered live notifications at the last handshake. */
  get liveOffered(): boolean {
    return this.live;
  }
}

/** A cursor is per set of buckets; long sets are hashed to fit the cursor store's names. */
function bucketKey(buckets: string[]): string {
  const joined = buckets.join(",");
  return joined.length <= 200 ? joined : `sha256:${createHash("sha256").update(joined).digest("hex")}`;
}

function positive(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new InvalidArgumentError(name, `must be a positive number, got ${String(v)}`);
  }
  return v;
}

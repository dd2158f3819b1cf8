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
 * A handshake refused for the token is a HubAuthError, for a bucket a
 * HubBucketError (see transport.ts), for the protocol version a ProtocolError.
 * `start` runs the push leg every `pushIntervalMs` and the pull leg every
 * `pullIntervalMs` (both `intervalMs` unless given; see SyncSchedule), and
 * after a failure waits min(max, initial * multiplier^(failures-1)) with
 * +-jitter instead; the loop re-arms after every cycle whatever happened. It
 * resolves once the first handshake is accepted, and when that handshake
 * fails rejects with its error and leaves nothing running; a manager already
 * started rejects at once. A live notification from the transport runs the
 * pull leg at once. `stop` stops the loop, waits for the cycle in flight and
 * flushes cursors. After `warnAfterFailures` failed cycles in a row it warns
 * once (logger, "warning" event), and says so when a cycle succeeds again
 * ("recovered"). Events: "synced" (a CycleResult), "failed" (the error, and
 * the delay before the next try), "warning", "recovered", "progress", "status".
 * The parts it composes: the handshake's terms (handshake.ts), the loop and
 * its timer (sync-loop.ts, sync-schedule.ts), the legs (transfer.ts), the
 * warning after a streak of failures (failure-streak.ts).
 */
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { type CursorKey, CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import { syncChanges, syncCycleDuration, syncCycles, syncLastSuccess } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import { inSpan } from "../trace.js";
import { FailureStreak } from "./failure-streak.js";
import { shakeHands } from "./handshake.js";
import { DEFAULT_LIMITS } from "./protocol.js";
import { SyncLoop } from "./sync-loop.js";
import {
  type CycleResult,
  type InitialSyncOptions,
  type RetryOptions,
  type SyncDirection,
  type SyncManagerOptions,
  type SyncPosition,
  type SyncStatus,
  syncSettings,
} from "./sync-options.js";
import { type LegName, SyncSchedule } from "./sync-schedule.js";
import { pullAll, pushAll } from "./transfer.js";
import { HubRefusedError, type Transport } from "./transport.js";

type Events = {
  synced: [CycleResult];
  failed: [error: Error, retryInMs: number | undefined];
  /** The streak of failures reached `warnAfterFailures`: the last error, the failures so far, since when (epoch ms). */
  warning: [error: Error, failures: number, since: number];
  /** A cycle succeeded after a streak that warned: how many failed, and for how long (ms). */
  recovered: [failures: number, downMs: number];
  progress: [batchSize: number, total: number, hasMore: boolean, position: SyncPosition];
  status: [SyncStatus];
};

const BOTH: readonly LegName[] = ["push", "pull"];

export type {
  CycleResult,
  InitialSyncOptions,
  RetryOptions,
  SyncDirection,
  SyncLogger,
  SyncManagerOptions,
  SyncPosition,
  SyncState,
  SyncStatus,
} from "./sync-options.js";

export class SyncManager extends EventEmitter<Events> {
  readonly direction: SyncDirection;
  readonly buckets: string[];
  readonly intervalMs: number;
  readonly pushIntervalMs: number;
  readonly pullIntervalMs: number;
  readonly warnAfterFailures: number;
  readonly retry: Required<RetryOptions>;
  private batchSize: number;
  private readonly cursors: CursorStore;
  private hubNodeId: string | null = null;
  /** The hub's last sequence number at the last handshake, if it said. */
  private hubHead: string | undefined;
  private live = false;
  private running: Promise<CycleResult> | null = null;
  private queued: Promise<CycleResult> | null = null;
  /** The legs the queued cycle will run: those of every call that joined it. */
  private readonly wanted = new Set<LegName>();
  private limits = DEFAULT_LIMITS;
  private retryIn = 0;
  private readonly loop: SyncLoop;
  private readonly streak: FailureStreak;
  private current: SyncStatus = { state: "idle", failures: 0 };

  constructor(
    readonly replica: Replica,
    readonly transport: Transport,
    options: SyncManagerOptions = {},
  ) {
    super();
    const settings = syncSettings(replica, options);
    this.direction = settings.direction;
    this.batchSize = settings.batchSize;
    this.buckets = settings.buckets;
    this.intervalMs = settings.intervalMs;
    this.pushIntervalMs = settings.pushIntervalMs;
    this.pullIntervalMs = settings.pullIntervalMs;
    this.retry = settings.retry;
    this.warnAfterFailures = settings.warnAfterFailures;
    this.streak = new FailureStreak(settings.warnAfterFailures, {
      peer: transport.peer,
      logger: settings.logger,
      onWarning: (error, failures, since) => this.emit("warning", error, failures, since),
      onRecovered: (failures, downMs) => this.emit("recovered", failures, downMs),
    });
    this.cursors = options.cursors ?? new CursorStore(replica.store, { flushIntervalMs: 0 });
    const legs = BOTH.filter((l) => this.direction === "both" || this.direction === l);
    const schedule = new SyncSchedule(legs, { push: this.pushIntervalMs, pull: this.pullIntervalMs });
    this.loop = new SyncLoop(schedule, {
      run: (l) => this.run(l),
      retryIn: () => this.retryIn,
      subscribe: () =>
        this.transport.subscribe?.(this.buckets, () => {
          if (this.loop.started && this.direction !== "push") this.loop.kick(["pull"]);
        }) ?? null,
      armed: (at) => this.setStatus({ ...this.current, nextAt: at }),
    });
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
    return this.run(BOTH);
  }

  /** A cycle of `legs`, or a share of the one queued after the cycle in flight. */
  private run(legs: readonly LegName[]): Promise<CycleResult> {
    if (this.running) {
      for (const l of legs) this.wanted.add(l);
      this.queued ??= this.running
        .catch(() => {})
        .then(() => {
          this.queued = null;
          const joined = [...this.wanted];
          this.wanted.clear();
          return this.run(joined);
        });
      return this.queued;
    }
    this.running = this.cycle(legs).finally(() => {
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
    this.running = this.cycle(BOTH, progress).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /**
   * Starts the background loop; resolves once its first handshake is
   * accepted, and then subscribes to live notices if the transport can.
   * When that handshake fails it rejects with the handshake's error and the
   * loop is stopped again; a manager already started rejects at once.
   */
  start(): Promise<void> {
    return this.loop.start();
  }

  /** Stops the loop, waits for the cycle in flight, flushes cursors. Idempotent. */
  async stop(): Promise<void> {
    this.loop.halt();
    while (this.running || this.queued) await (this.queued ?? this.running)?.catch(() => {});
    this.cursors.flushDirty();
    this.setStatus({ ...this.current, nextAt: undefined });
  }

  /** A cycle in a span of its own (when tracing is on), with its push and pull legs as children. */
  private cycle(
    legs: readonly LegName[],
    progress?: (n: number, hasMore: boolean, position: SyncPosition) => void,
  ): Promise<CycleResult> {
    return inSpan(
      "tidewire.sync.cycle",
      { "tidewire.peer": this.transport.peer, "tidewire.sync.direction": this.direction },
      async (span) => {
        const result = await this.runCycle(legs, progress);
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
    legs: readonly LegName[],
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
    let shook = false;
    try {
      const hub = await this.handshake();
      shook = true;
      this.loop.settleStart(null);
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
      if (this.direction !== "pull" && legs.includes("push")) {
        const key = this.key(hub, "push");
        const push = { ...leg, key, progress: report("push", key, () => this.replica.head()) };
        await inSpan("tidewire.sync.push", {}, () => pushAll(push));
      }
      if (this.direction !== "push" && legs.includes("pull")) {
        const key = this.key(hub, "pull");
        const pull = { ...leg, key, progress: report("pull", key, () => this.hubHead) };
        await inSpan("tidewire.sync.pull", {}, () => pullAll(pull));
      }
      result.durationMs = performance.now() - started;
      this.streak.succeed(Date.now());
      const now = Date.now();
      this.setStatus({ state: "idle", failures: 0, lastSuccessAt: now });
      syncCycles.labels(peer, bucketLabel, "ok").inc();
      syncLastSuccess.labels(peer).set(now / 1000);
      syncCycleDuration.labels(peer).observe(result.durationMs / 1000);
      this.emit("synced", result);
      return result;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      const warn = this.streak.fail(Date.now());
      // A dropped link may come back as another hub: shake hands again.
      this.hubNodeId = null;
      syncCycles.labels(peer, bucketLabel, "error").inc();
      syncCycleDuration.labels(peer).observe((performance.now() - started) / 1000);
      this.setStatus({
        ...this.current,
        state: "error",
        message: error.message,
        failures: this.streak.failures,
      });
      // A refusal the same request would meet again (a 4xx: a constraint, a bucket out of scope) is
      // not a server's hiccup: retrying it at the short backoff only repeats it, so wait the longest.
      this.retryIn =
        error instanceof HubRefusedError && error.permanent
          ? this.retry.maxMs
          : this.streak.backoff(this.retry);
      // A first handshake that failed stops the loop before anyone hears of a next try.
      if (!shook) this.loop.settleStart(error);
      this.emit("failed", error, this.loop.started ? this.retryIn : undefined);
      if (warn) this.streak.warn(error);
      throw error;
    } finally {
      clearInterval(hold);
      syncChanges.labels(peer, bucketLabel, "push").inc(result.pushed);
      syncChanges.labels(peer, bucketLabel, "pull").inc(result.pulled);
    }
  }

  private async handshake(): Promise<string> {
    if (this.hubNodeId) return this.hubNodeId;
    const terms = await shakeHands(this.transport, this.replica, this.buckets);
    this.batchSize = Math.min(this.batchSize, terms.limits.maxRows);
    this.limits = terms.limits;
    this.live = terms.live;
    this.hubHead = terms.head;
    this.hubNodeId = terms.hubNodeId;
    return terms.hubNodeId;
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

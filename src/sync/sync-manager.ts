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
 */
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { type CursorKey, CursorStore } from "../cursor-store.js";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { syncChanges, syncCycleDuration, syncCycles, syncLastSuccess } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import { detached, inSpan } from "../trace.js";
import { FailureStreak } from "./failure-streak.js";
import { CAPABILITIES, DEFAULT_LIMITS, PROTOCOL_VERSION, ProtocolError } from "./protocol.js";
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
  private readonly schedule: SyncSchedule;
  private batchSize: number;
  private readonly cursors: CursorStore;
  private hubNodeId: string | null = null;
  /** The hub's last sequence number at the last handshake, if it said. */
  private hubHead: string | undefined;
  private live = false;
  private unsubscribe: (() => void) | null = null;
  private running: Promise<CycleResult> | null = null;
  private queued: Promise<CycleResult> | null = null;
  /** The legs the queued cycle will run: those of every call that joined it. */
  private readonly wanted = new Set<LegName>();
  /** `start`'s promise, until the loop's first handshake settles it. */
  private starting: { resolve: () => void; reject: (error: Error) => void } | null = null;
  private limits = DEFAULT_LIMITS;
  private retryIn = 0;
  private timer: NodeJS.Timeout | null = null;
  private keepAlive: NodeJS.Timeout | null = null;
  private started = false;
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
    this.schedule = new SyncSchedule(legs, { push: this.pushIntervalMs, pull: this.pullIntervalMs });
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
    if (this.started)
      return Promise.reject(
        new TidewireError("the sync loop is already started; stop() it first", "ERR_ALREADY_STARTED"),
      );
    this.started = true;
    // A started loop keeps its process alive even while a call waits on a socket Node does not count.
    this.keepAlive = setInterval(() => {}, 60_000);
    const first = new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
    });
    this.schedule.restart(Date.now());
    this.kick(this.schedule.legs);
    return first;
  }

  /** Stops the loop, waits for the cycle in flight, flushes cursors. Idempotent. */
  async stop(): Promise<void> {
    this.halt();
    while (this.running || this.queued) await (this.queued ?? this.running)?.catch(() => {});
    this.cursors.flushDirty();
    this.setStatus({ ...this.current, nextAt: undefined });
  }

  /** Drops the loop's timer, handle and subscription: nothing more starts, the cycle in flight runs on. */
  private halt(): void {
    this.started = false;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Settles `start`'s promise once: an accepted first handshake subscribes, a failed one stops the loop. */
  private settleStart(error: Error | null): void {
    const starting = this.starting;
    if (!starting) return;
    this.starting = null;
    if (error) {
      this.halt();
      starting.reject(error);
      return;
    }
    if (this.started && this.transport.subscribe) {
      this.unsubscribe = this.transport.subscribe(this.buckets, () => {
        if (this.started && this.direction !== "push") this.kick(["pull"]);
      });
    }
    starting.resolve();
  }

  /** Runs `legs` now, then re-arms the timer whatever happened. */
  private kick(legs: readonly LegName[]): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    detached(() => this.run(legs))
      .then(
        () => this.schedule.ran(legs, Date.now()),
        () => this.schedule.failed(Date.now(), this.retryIn),
      )
      .then(() => this.arm())
      .catch(() => {});
  }

  /**
   * Sets the timer for the next leg due, even while another cycle runs (its
   * firing then queues one more): a loop whose timer was skipped would leave
   * nothing to wake it, and a CLI process with no timer exits.
   */
  private arm(): void {
    if (!this.started) return;
    if (this.timer) clearTimeout(this.timer);
    const at = this.schedule.nextAt();
    this.timer = setTimeout(() => this.kick(this.schedule.due(Date.now())), Math.max(0, at - Date.now()));
    this.setStatus({ ...this.current, nextAt: at });
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
      this.settleStart(null);
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
      if (!shook) this.settleStart(error);
      this.emit("failed", error, this.started ? this.retryIn : undefined);
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
    if (answer.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `the hub refused the handshake: ${answer.reason ?? `it speaks protocol version ${answer.protocolVersion}, this client ${PROTOCOL_VERSION}`}`,
        "ERR_PROTOCOL_VERSION",
      );
    }
    // Our version, refused all the same (a hub of another make): its reason, not a version's code.
    if (!answer.accepted) {
      throw new ProtocolError(
        `the hub refused the handshake: ${answer.reason ?? "it gave no reason"}`,
        "ERR_HANDSHAKE_REFUSED",
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

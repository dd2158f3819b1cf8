/**
 * Daemon: the lifecycle of `tidewire serve`.
 *
 * Contract: `startDaemon` opens the store, registers the built-in maintenance
 * jobs as periodic jobs, listens, then starts a Worker and a Scheduler on the
 * default queue; if a step fails, whatever was started is undone and the
 * error propagates. `stop` is idempotent and goes in this order: stop
 * accepting requests, stop firing periodic jobs, wait for the jobs in flight,
 * close the store (which checkpoints the WAL). `stopOnSignals` wires SIGINT and
 * SIGTERM to `stop`; a second signal exits at once, and the jobs it abandons
 * come back when their leases expire.
 */
import { CursorStore } from "../cursor-store.js";
import { TidewireError } from "../errors.js";
import { type History, startHistory } from "../history/recorder.js";
import { resolveAuth } from "../hub/auth.js";
import { Hub } from "../hub/hub.js";
import { WriteGate } from "../hub/write-gate.js";
import { createLogger, type Logger } from "../log.js";
import { MeshMember } from "../mesh/mesh-member.js";
import { collectProcessMetrics, sqliteBusyRetries } from "../metrics.js";
import { Peers } from "../peers/peers.js";
import { COLLECT_PINS, collectPinsHandler } from "../pins/collect-job.js";
import { DOWNLOAD_PINS, downloadPinsHandler } from "../pins/download.js";
import { Pins } from "../pins/pins.js";
import { Queue } from "../queue/queue.js";
import { Scheduler } from "../queue/scheduler.js";
import { type Handlers, Worker } from "../queue/worker.js";
import { Replica } from "../replica/replica.js";
import { reclaimFreePages, storageStats } from "../storage.js";
import { isBusy, openStore, type Store } from "../store.js";
import { type DaemonOptions, daemonSettings, mergeTables } from "./daemon-options.js";
import { type RemoteJobs, remoteJobs } from "./remote-jobs.js";
import type * as Server from "./server.js";
import { PEER_JOB_TYPES, PRIORITY, peerJobHandlers, peerPinSources, schedulePeerJobs } from "./sync-jobs.js";

export type { DaemonOptions } from "./daemon-options.js";

/** Built-in maintenance: each is both the job type and the periodic job's name, with its period in ms. */
export const MAINTENANCE_JOBS = {
  "tidewire.cleanup": 86_400_000,
  "tidewire.checkpoint": 5 * 60_000,
  [COLLECT_PINS]: 3_600_000,
} as const;

export interface Daemon {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  readonly queue: Queue;
  readonly worker: Worker;
  readonly scheduler: Scheduler;
  readonly logger: Logger;
  readonly hub: Hub;
  readonly peers: Peers;
  readonly pins: Pins;
  /** The mesh member, when the daemon joined one (`mesh` option, `--redis`). */
  readonly mesh: MeshMember | undefined;
  /** The remote targets' queue, worker and scheduler. */
  readonly remotes: RemoteJobs;
  /** Per-minute rollups of jobs, changes and sync cycles (src/history/recorder.ts). */
  readonly history: History;
  stop(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions = {}): Promise<Daemon> {
  // Checked before the store is opened: a bad option changes nothing.
  const settings = daemonSettings(
    options,
    (type) => type in MAINTENANCE_JOBS || PEER_JOB_TYPES.includes(type),
  );
  const { host, port, requestTimeoutMs, keepAliveTimeoutMs, declared, busyTimeoutMs, lockWaitMs } = settings;
  const { hubLimits, metricsToken, dbPath, authOptions, tls, peerOptions, remoteOptions } = settings;
  const logger = options.logger ?? createLogger({ level: options.logLevel });
  const startedAt = Date.now();
  const store = openStore(dbPath);
  // Opened with the long busy wait (start-up may wait for a lock), then shortened: from here on
  // every call runs on the event loop, and one that meets a lock must fail fast (WriteGate waits).
  store.setBusyWait(busyTimeoutMs, { attempts: 1, baseMs: 5, maxMs: 5 });
  const gate = new WriteGate(store, { waitMs: lockWaitMs });
  if (storageStats(store).autoVacuum !== "incremental")
    logger.warn(
      `${store.path} has no incremental auto-vacuum (an older file): cleanup cannot shrink it; stop the daemon and run \`tidewire vacuum ${store.path} --full\` once to convert it`,
    );
  let app: ReturnType<typeof Server.buildServer> | undefined;
  let mesh: MeshMember | undefined;
  let unwatch: (() => void) | undefined;
  // Set once the worker and hub exist; SyncBucket jobs run only after that.
  let history: History | undefined;
  try {
    const queue = new Queue(store);
    // A relay: it keeps and serves the log of buckets whose tables it does not have.
    const replica = Replica.attach(store, { relay: true, maxDriftMs: options.maxDriftMs });
    // Peer work: PingPeer and SyncBucket jobs, enqueued by two periodic jobs (src/daemon/sync-jobs.ts).
    const peers = new Peers(store);
    const cursors = new CursorStore(store, { flushIntervalMs: 0 });
    schedulePeerJobs(queue, peerOptions);
    // Pins are fetched from the peers that are not known to be down, unless the caller names sources;
    // a sync that pulled rows naming pins this file lacks queues one DownloadPins job for them.
    const pins = new Pins(store, { maxBytes: options.pins?.maxBytes });
    const sources = options.pins?.sources ?? (() => peerPinSources(peers));
    // The job finds the missing pins: scanning the pin columns here too would read them twice.
    const afterPull = () => {
      if (pins.references.columns().length > 0)
        queue.add(DOWNLOAD_PINS, {}, { key: DOWNLOAD_PINS, priority: PRIORITY.sync });
    };
    const peerHandlers = peerJobHandlers({
      replica,
      queue,
      peers,
      cursors,
      logger,
      options: peerOptions,
      afterPull,
      onSynced: (peer, result) => history?.synced(peer, result),
    });
    const handlers = {
      [DOWNLOAD_PINS]: downloadPinsHandler(pins, { sources }),
      ...options.handlers,
      ...maintenanceHandlers(store, queue, logger),
      [COLLECT_PINS]: collectPinsHandler(pins, logger, options.pins?.graceMs),
      ...peerHandlers,
    };
    // The daemon shares the default queue with applications on the same file: it claims only
    // the types it handles, so it never fails another program's jobs as "no handler".
    const worker = new Worker(queue, handlers, { concurrency: options.concurrency, handledTypesOnly: true });
    const scheduler = new Scheduler(queue);
    for (const [type, everyMs] of Object.entries(MAINTENANCE_JOBS)) queue.every(type, everyMs, type);
    logEvents(worker, scheduler, logger, gate);
    const remotes = remoteJobs({ store, replica, logger, options: remoteOptions });
    logEvents(remotes.worker, remotes.scheduler, logger, gate);
    collectProcessMetrics();

    // Loaded here, not on import: importing the library should not load fastify.
    const { buildServer } = await import("./server.js");
    const { auth, generated, source } = resolveAuth({ ...authOptions, dbPath: store.path });
    const tables = mergeTables(declared, auth.tables);
    const hub = new Hub(replica, { limits: options.limits, buckets: auth.buckets(), tables });
    // Per-minute rollups of jobs, changes and sync cycles, kept in the file (src/history).
    const recorded = startHistory({ store, worker, hub, logger });
    history = recorded;
    const hubRoutes = {
      hub,
      auth,
      rateLimitPerSecond: options.rateLimitPerSecond,
      pins,
      rollups: recorded.rollups,
      ...hubLimits,
    };
    mesh = options.mesh && new MeshMember(replica, { ...options.mesh, logger, peers });
    // Changes that came through the mesh wake the hub's live subscribers as a push would.
    mesh?.on("applied", (e) => e.applied > 0 && hub.emit("changes", [e.bucket]));
    // So do writes that applications make to the hub's own tables.
    unwatch = hub.watchLocalWrites(25, gate);
    await mesh?.start();
    const http = buildServer({
      store,
      queue,
      logger,
      startedAt,
      hub: hubRoutes,
      tls,
      requestTimeoutMs,
      keepAliveTimeoutMs,
      gate,
      metricsToken,
    });
    app = http;
    let url: string;
    try {
      url = await http.listen({
        host,
        port,
        listenTextResolver: (address) => `tidewire listening on ${address}, db ${store.path}`,
      });
    } catch (err) {
      throw new TidewireError(`cannot listen on ${host}:${port}: ${(err as Error).message}`, "ERR_LISTEN");
    }
    const dashboard = `${url}/dashboard`;
    if (generated) {
      // Printed this once: later starts read it from the file, which only its owner can read.
      // The fragment is never sent to the server: the page takes the token from it.
      logger.warn(
        {
          token: generated.token,
          tokenFile: generated.path,
          dashboard: `${dashboard}#token=${generated.token}`,
        },
        `no token configured: generated one for the sync endpoints, kept in ${generated.path} (mode 0600)`,
      );
    } else logger.info({ auth: source, hubNodeId: hub.nodeId }, "sync endpoints under /v1");
    logger.info({ dashboard }, `dashboard at ${dashboard}`);
    worker.start();
    scheduler.start();
    remotes.start();

    let stopping: Promise<void> | null = null;
    const stop = () => {
      stopping ??= (async () => {
        logger.info({ jobsInFlight: worker.held }, "stopping");
        // A server that fails to close must not keep the jobs in flight from being written.
        // close() reaps only the keep-alive connections idle at that moment; one whose response
        // (a pin, say) was still streaming would hold it until its keep-alive timeout.
        const reap = setInterval(() => http.server.closeIdleConnections(), 50);
        await http
          .close()
          .catch((err: unknown) => logger.error({ err }, "the HTTP server did not close cleanly"))
          .finally(() => clearInterval(reap));
        await mesh?.stop().catch((err: unknown) => logger.error({ err }, "the mesh did not stop cleanly"));
        scheduler.stop();
        unwatch?.();
        try {
          // A remote cycle in flight finishes; its connection closes with it.
          await Promise.all([worker.stop(), remotes.stop()]);
        } finally {
          // After the worker: its last outcomes are counted. It logs its own failure.
          history?.stop();
          gate.close();
          store.close();
        }
        logger.info("stopped");
      })();
      return stopping;
    };
    const bound = http.server.address();
    const boundPort = typeof bound === "object" && bound ? bound.port : port;
    return {
      url,
      port: boundPort,
      store,
      queue,
      worker,
      scheduler,
      logger,
      hub,
      peers,
      pins,
      mesh,
      remotes,
      history: recorded,
      stop,
    };
  } catch (err) {
    unwatch?.();
    history?.stop();
    await app?.close().catch(() => {});
    await mesh?.stop().catch(() => {});
    gate.close();
    store.close();
    throw err;
  }
}

/** The signals a daemon stops on (stopOnSignals), and that `tidewire serve` holds while it starts. */
export const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** Stops the daemon on SIGINT or SIGTERM and then exits; returns a function that unhooks the signals. */
export function stopOnSignals(daemon: Daemon, exit: (code: number) => void = (code) => process.exit(code)) {
  let received: string | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      daemon.logger.warn(
        { signal, jobsInFlight: daemon.worker.held },
        `${signal} again: exiting now; unfinished jobs return to the queue when their leases expire`,
      );
      exit(1);
      return;
    }
    received = signal;
    daemon.logger.info({ signal }, `${signal} received: stopping (send it again to exit at once)`);
    daemon.stop().then(
      () => exit(0),
      (err: unknown) => {
        daemon.logger.error({ err }, "the daemon did not stop cleanly");
        exit(1);
      },
    );
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of SIGNALS) process.off(signal, onSignal);
  };
}

function maintenanceHandlers(store: Store, queue: Queue, logger: Logger): Handlers {
  return {
    "tidewire.cleanup": async (_job, { signal }) => {
      const removed = queue.cleanup();
      logger.info({ removed }, `cleanup removed ${removed} finished jobs past their retention`);
      // The pages the deleted rows held go back to the file system, a few at a time (src/storage.ts).
      const r = await reclaimFreePages(store, { signal });
      if (r.stoppedBy === "auto_vacuum") return;
      logger.info(
        { pagesFreed: r.pagesFreed, steps: r.steps, longestStepMs: r.longestStepMs, stoppedBy: r.stoppedBy },
        `returned ${r.pagesFreed} free pages (${r.before.sizeBytes - r.after.sizeBytes} bytes) to the file system`,
      );
    },
    "tidewire.checkpoint": () => store.checkpoint(),
  };
}

function logEvents(worker: Worker, scheduler: Scheduler, logger: Logger, gate: WriteGate): void {
  // Another program's write lock is one event, logged when it starts and ends, not at every poll.
  gate.on("locked", () =>
    logger.warn(
      "another program holds the database's write lock: writes wait, /readyz fails past --lock-wait",
    ),
  );
  gate.on("released", (heldMs) => logger.info({ heldMs }, "the database's write lock is free again"));
  const busy = (err: unknown, what: "worker" | "scheduler") => {
    if (!isBusy(err)) return false;
    // The next tick tries again: a retry like any other, counted so.
    sqliteBusyRetries.labels(`daemon.${what}`).inc();
    gate.noteBusy();
    logger.debug({ err }, `${what}: the database is locked by another program; next tick`);
    return true;
  };
  worker.on("completed", (job) => logger.debug({ jobId: job.id, type: job.type }, "job completed"));
  worker.on("failed", (job, err: Error, final: boolean) =>
    logger.warn(
      { jobId: job.id, type: job.type, attempt: job.attempts, final, error: err.message },
      final ? "job failed for good" : "job attempt failed; it will be retried",
    ),
  );
  worker.on("stale", (job) =>
    logger.warn({ jobId: job.id, type: job.type }, "job outcome dropped: its lease was lost first"),
  );
  worker.on(
    "error",
    (err) => busy(err, "worker") || logger.error({ err }, "the worker could not reach the queue"),
  );
  scheduler.on("fired", (n: number) => logger.debug({ fired: n }, "periodic jobs enqueued"));
  scheduler.on(
    "error",
    (err) => busy(err, "scheduler") || logger.error({ err }, "periodic jobs could not be fired"),
  );
}

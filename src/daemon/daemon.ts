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
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { type History, startHistory } from "../history/recorder.js";
import { checkAuthOptions, resolveAuth } from "../hub/auth.js";
import { Hub } from "../hub/hub.js";
import { DAEMON_BUSY_TIMEOUT_MS, DEFAULT_LOCK_WAIT_MS, WriteGate } from "../hub/write-gate.js";
import { createLogger, type Logger, type LogLevel } from "../log.js";
import { MeshMember } from "../mesh/mesh-member.js";
import { collectProcessMetrics, sqliteBusyRetries } from "../metrics.js";
import { Peers } from "../peers/peers.js";
import { COLLECT_PINS, collectPinsHandler } from "../pins/collect-job.js";
import { DOWNLOAD_PINS, downloadPinsHandler, type PinSource } from "../pins/download.js";
import { Pins } from "../pins/pins.js";
import { Queue } from "../queue/queue.js";
import { Scheduler } from "../queue/scheduler.js";
import { type Handlers, Worker } from "../queue/worker.js";
import { Replica } from "../replica/replica.js";
import { reclaimFreePages, storageStats } from "../storage.js";
import { isBusy, openStore, type Store } from "../store.js";
import type { BatchLimits } from "../sync/protocol.js";
import { checkInteger } from "../validate.js";
import { type RemoteJobOptions, type RemoteJobs, remoteJobOptions, remoteJobs } from "./remote-jobs.js";
import type * as Server from "./server.js";
import {
  PEER_JOB_TYPES,
  type PeerJobOptions,
  PRIORITY,
  peerJobHandlers,
  peerJobOptions,
  peerPinSources,
  schedulePeerJobs,
} from "./sync-jobs.js";

export const DEFAULT_DB_PATH = "./data/tidewire.db";
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 7420;

/** Built-in maintenance: each is both the job type and the periodic job's name, with its period in ms. */
export const MAINTENANCE_JOBS = {
  "tidewire.cleanup": 86_400_000,
  "tidewire.checkpoint": 5 * 60_000,
  [COLLECT_PINS]: 3_600_000,
} as const;

/** Peer work (PingPeer, SyncBucket jobs; see sync-jobs.ts) is tuned by the PeerJobOptions. */
/** Remote targets (RemoteSync jobs on the queue "remote"; see remote-jobs.ts) are tuned by the RemoteJobOptions. */
export interface DaemonOptions extends PeerJobOptions, RemoteJobOptions {
  dbPath?: string;
  host?: string;
  /** 0 picks a free port; `Daemon.url` tells which. */
  port?: number;
  /** Jobs run at once by the daemon's worker (the Worker's default when absent). */
  concurrency?: number;
  logLevel?: LogLevel;
  /** Used instead of a new logger on stdout; `logLevel` is then ignored. */
  logger?: Logger;
  /** Handlers for the application's own job types, run beside the built-in ones. */
  handlers?: Handlers;
  /** Bearer token for the sync endpoints (every bucket, admin). */
  token?: string;
  /** JSON file of tokens, each with its buckets, read, read-write or admin access, and tables (see src/hub/auth.ts). */
  tokensFile?: string;
  /**
   * Table -> bucket: tables the hub accepts into that bucket from any writer
   * of it when they first arrive (`--table orders=b`); any other new table
   * needs an admin token. A tokens file can declare more.
   */
  tables?: Record<string, string>;
  /** No auth on the sync endpoints; refused unless `host` is a loopback address. */
  insecure?: boolean;
  /** Batch limits of the sync protocol. */
  limits?: Partial<BatchLimits>;
  /** Sync requests per token per second (default 200). */
  rateLimitPerSecond?: number;
  /**
   * How long one request may take to arrive whole, ms (default 30,000; 0: no
   * limit). A pin PUT over a slow link needs more; a client that trickles
   * bytes holds a connection this long at most.
   */
  requestTimeoutMs?: number;
  /** How long a connection may sit idle between requests, ms (default 5,000). */
  keepAliveTimeoutMs?: number;
  /** Pins beside the database: where DownloadPins jobs fetch from (default none), size limit, GC grace. */
  pins?: { sources?: () => readonly PinSource[]; maxBytes?: number; graceMs?: number };
  /**
   * Join a mesh over Redis Streams: the hub's log is published to Redis and
   * its peers' are applied here (so its HTTP clients see them), for `buckets`
   * (default: the buckets its tables and relayed tables carry, or "default").
   */
  mesh?: { redis: string; buckets?: string[]; prefix?: string; maxLen?: number };
  /**
   * How long the daemon's connection waits for another program's write lock
   * before SQLite gives up, ms (default 20). It blocks the event loop, so it
   * stays short: requests wait longer off the loop (`lockWaitMs`).
   */
  busyTimeoutMs?: number;
  /** How long a sync request waits for another program's write lock before its 503, ms (default 2,000). */
  lockWaitMs?: number;
  /** Live sockets (GET /v1/live) open at once, in all (default 1,000, held under half the open-file limit). */
  maxLive?: number;
  /** Live sockets open at once per token (default 100). */
  maxLivePerToken?: number;
  /** Requests with a wrong or missing token per address per minute before it gets 429 (default 60). */
  authFailures?: number;
  /** GET /metrics needs this bearer token (default: /metrics is public). */
  metricsToken?: string;
  /** Serve HTTPS: PEM files of the certificate chain and its private key (both, or neither). */
  tls?: { certFile: string; keyFile: string };
  /** Refuse changes stamped further ahead of this machine's time than this, ms (the Replica's, default 60,000). */
  maxDriftMs?: number;
}

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
  const host = options.host ?? DEFAULT_HOST;
  const port = checkInteger("port", options.port ?? DEFAULT_PORT, 0);
  const requestTimeoutMs = checkInteger("requestTimeoutMs", options.requestTimeoutMs ?? 30_000, 0);
  const keepAliveTimeoutMs = checkInteger("keepAliveTimeoutMs", options.keepAliveTimeoutMs ?? 5_000, 1);
  const declared = checkTables(options.tables);
  const busyTimeoutMs = checkInteger("busyTimeoutMs", options.busyTimeoutMs ?? DAEMON_BUSY_TIMEOUT_MS, 0);
  const lockWaitMs = checkInteger("lockWaitMs", options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS, 0);
  // Checked before the store is opened: a bad option changes nothing.
  const optional = (name: "maxLive" | "maxLivePerToken" | "authFailures") =>
    options[name] === undefined ? undefined : checkInteger(name, options[name], 1);
  const hubLimits = {
    maxLive: optional("maxLive"),
    maxLivePerToken: optional("maxLivePerToken"),
    authFailures: optional("authFailures"),
  };
  const { metricsToken } = options;
  if (
    metricsToken !== undefined &&
    (typeof metricsToken !== "string" || !/^[\x21-\x7e]{16,512}$/.test(metricsToken))
  )
    throw new InvalidArgumentError("metricsToken", "must be 16 to 512 printable characters without spaces");
  if (port > 65_535) throw new InvalidArgumentError("port", `must be at most 65535, got ${port}`);
  for (const type of Object.keys(options.handlers ?? {})) {
    if (type in MAINTENANCE_JOBS || PEER_JOB_TYPES.includes(type)) {
      throw new InvalidArgumentError(
        `handlers.${type}`,
        "this job type is reserved for tidewire's maintenance",
      );
    }
  }
  const dbPath = options.dbPath ?? DEFAULT_DB_PATH;
  const authOptions = { ...options, host, dbPath };
  checkAuthOptions(authOptions);
  const tls = readTls(options.tls);
  const peerOptions = peerJobOptions(options);
  const remoteOptions = remoteJobOptions(options);
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
    const hub = new Hub(replica, { limits: options.limits, relay: true, buckets: auth.buckets(), tables });
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

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

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

/** `tables` as given: names a relayed table could have, each in a bucket. */
function checkTables(tables: DaemonOptions["tables"]): Map<string, string> {
  if (tables === undefined) return new Map();
  if (tables === null || typeof tables !== "object" || Array.isArray(tables))
    throw new InvalidArgumentError("tables", "must be an object of table -> bucket");
  const out = new Map<string, string>();
  for (const [table, bucket] of Object.entries(tables)) {
    if (table.trim() === "" || table.length > 200 || /^(tw_|sqlite_)/i.test(table))
      throw new InvalidArgumentError("tables", `${JSON.stringify(table)} cannot be a synced table's name`);
    if (typeof bucket !== "string" || bucket.trim() === "" || bucket.length > 200)
      throw new InvalidArgumentError(
        `tables.${table}`,
        `must be a bucket name, got ${JSON.stringify(bucket)}`,
      );
    out.set(table, bucket);
  }
  return out;
}

/** The options' declarations and the tokens file's, which must agree on each table's bucket. */
function mergeTables(given: Map<string, string>, file: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map(given);
  for (const [table, bucket] of file) {
    const before = out.get(table);
    if (before !== undefined && before !== bucket) {
      throw new InvalidArgumentError(
        "tables",
        `table ${JSON.stringify(table)} is declared in bucket ${JSON.stringify(before)} and, by the tokens file, in ${JSON.stringify(bucket)}`,
      );
    }
    out.set(table, bucket);
  }
  return out;
}

/** Reads the TLS files before anything starts, so a wrong path is one clear error, not a half-started daemon. */
function readTls(tls: DaemonOptions["tls"]): { cert: Buffer; key: Buffer } | undefined {
  if (tls === undefined) return undefined;
  if (
    tls === null ||
    typeof tls !== "object" ||
    typeof tls.certFile !== "string" ||
    typeof tls.keyFile !== "string"
  )
    throw new InvalidArgumentError("tls", "must be { certFile, keyFile }, the paths of two PEM files");
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new InvalidArgumentError(`tls.${what}`, `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const cert = read("certFile", tls.certFile);
  const key = read("keyFile", tls.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new InvalidArgumentError(
      "tls",
      `the certificate and key do not make a TLS identity: ${(err as Error).message}`,
    );
  }
  return { cert, key };
}

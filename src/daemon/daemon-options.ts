/**
 * DaemonOptions: what `startDaemon` is configured with, and their check.
 *
 * Contract: `daemonSettings` refuses every bad option with an
 * InvalidArgumentError naming it and reads the TLS files, before anything is
 * opened or started, so a bad option changes nothing; it fills the defaults.
 * Job types `reserved` says are the daemon's own cannot be given handlers.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { InvalidArgumentError } from "../errors.js";
import { checkAuthOptions } from "../hub/auth.js";
import { DAEMON_BUSY_TIMEOUT_MS, DEFAULT_LOCK_WAIT_MS } from "../hub/write-gate.js";
import type { Logger, LogLevel } from "../log.js";
import type { PinSource } from "../pins/download.js";
import type { Handlers } from "../queue/worker.js";
import type { BatchLimits } from "../sync/protocol.js";
import { checkInteger } from "../validate.js";
import { type RemoteJobOptions, remoteJobOptions } from "./remote-jobs.js";
import { type PeerJobOptions, peerJobOptions } from "./sync-jobs.js";

export const DEFAULT_DB_PATH = "./data/tidewire.db";
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 7420;

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

/** The options checked, with their defaults filled. */
export interface DaemonSettings {
  host: string;
  port: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** The `tables` option's table -> bucket. */
  declared: Map<string, string>;
  busyTimeoutMs: number;
  lockWaitMs: number;
  hubLimits: Record<"maxLive" | "maxLivePerToken" | "authFailures", number | undefined>;
  metricsToken: string | undefined;
  dbPath: string;
  authOptions: DaemonOptions & { host: string; dbPath: string };
  tls: { cert: Buffer; key: Buffer } | undefined;
  peerOptions: ReturnType<typeof peerJobOptions>;
  remoteOptions: ReturnType<typeof remoteJobOptions>;
}

export function daemonSettings(
  options: DaemonOptions,
  reserved: (jobType: string) => boolean,
): DaemonSettings {
  const host = options.host ?? DEFAULT_HOST;
  const port = checkInteger("port", options.port ?? DEFAULT_PORT, 0);
  const requestTimeoutMs = checkInteger("requestTimeoutMs", options.requestTimeoutMs ?? 30_000, 0);
  const keepAliveTimeoutMs = checkInteger("keepAliveTimeoutMs", options.keepAliveTimeoutMs ?? 5_000, 1);
  const declared = checkTables(options.tables);
  const busyTimeoutMs = checkInteger("busyTimeoutMs", options.busyTimeoutMs ?? DAEMON_BUSY_TIMEOUT_MS, 0);
  const lockWaitMs = checkInteger("lockWaitMs", options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS, 0);
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
    if (reserved(type)) {
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
  return {
    host,
    port,
    requestTimeoutMs,
    keepAliveTimeoutMs,
    declared,
    busyTimeoutMs,
    lockWaitMs,
    hubLimits,
    metricsToken,
    dbPath,
    authOptions,
    tls,
    peerOptions,
    remoteOptions,
  };
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
export function mergeTables(
  given: Map<string, string>,
  file: ReadonlyMap<string, string>,
): Map<string, string> {
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

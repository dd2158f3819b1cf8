/**
 * `tidewire serve`: runs the daemon in the foreground until SIGINT or SIGTERM.
 * Logs are JSON lines on stdout; a failure to start is reported like any other
 * CLI error (exit 1), a bad option like any usage error (exit 2).
 */
import { type Command, Option } from "commander";
import { SIGNALS, startDaemon, stopOnSignals } from "../daemon/daemon.js";
import { DEFAULT_DB_PATH, DEFAULT_HOST, DEFAULT_PORT } from "../daemon/daemon-options.js";
import { TidewireError } from "../errors.js";
import { LOG_LEVELS, type LogLevel } from "../log.js";
import { enableTracing } from "../trace.js";
import { tableSpec } from "./init.js";
import {
  duration,
  maxDriftOption,
  nonEmpty,
  nonNegativeInt,
  portNumber,
  positiveDuration,
  positiveInt,
} from "./io.js";

interface ServeFlags {
  trace?: boolean;
  db: string;
  host: string;
  port: number;
  concurrency?: number;
  logLevel: LogLevel;
  token?: string;
  tokensFile?: string;
  insecure?: boolean;
  rateLimit: number;
  syncInterval: number;
  pingInterval: number;
  remoteScan: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  table?: Array<{ table: string; bucket: string }>;
  busyTimeout: number;
  lockWait: number;
  metricsToken?: string;
  maxLive?: number;
  maxLivePerToken: number;
  authFailures: number;
  tlsCert?: string;
  tlsKey?: string;
  redis?: string;
  meshBucket?: string[];
  maxDrift?: number;
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "run the daemon: the sync hub (/v1), the job worker, periodic jobs, GET /healthz, GET /metrics and the dashboard (GET /dashboard)",
    )
    .option("--db <path>", "database file, created if missing", DEFAULT_DB_PATH)
    .option("--host <host>", "address to listen on", DEFAULT_HOST)
    .addOption(
      new Option("--port <port>", "port to listen on (0 picks a free one)")
        .argParser(portNumber)
        .default(DEFAULT_PORT),
    )
    .addOption(new Option("--token <token>", "bearer token for the sync endpoints (every bucket, admin)"))
    .addOption(
      new Option(
        "--tokens-file <file>",
        "JSON file of tokens, each with its buckets, access (read, read-write, admin) and the tables it declares",
      ).conflicts("token"),
    )
    .addOption(
      new Option("--insecure", "no auth on the sync endpoints (only on a loopback address)").conflicts([
        "token",
        "tokensFile",
      ]),
    )
    .addOption(
      new Option("--rate-limit <n>", "sync requests per token per second (0: no limit)")
        .argParser(nonNegativeInt)
        .default(200),
    )
    .addOption(
      new Option("--sync-interval <duration>", "how often each peer's buckets are synced (SyncBucket jobs)")
        .argParser(positiveDuration)
        .default(30_000, "30s"),
    )
    .addOption(
      new Option("--ping-interval <duration>", "how often each peer is pinged (PingPeer jobs)")
        .argParser(positiveDuration)
        .default(15_000, "15s"),
    )
    .addOption(
      new Option(
        "--remote-scan <duration>",
        "how often the registered remote targets (tidewire remote add) are checked for due RemoteSync jobs",
      )
        .argParser(positiveDuration)
        .default(5_000, "5s"),
    )
    .addOption(
      new Option(
        "--request-timeout <duration>",
        "how long one request may take to arrive whole (0s: no limit; raise it for large pin uploads)",
      )
        .argParser(duration)
        .default(30_000, "30s"),
    )
    .addOption(
      new Option("--keep-alive-timeout <duration>", "how long a connection may sit idle between requests")
        .argParser(positiveDuration)
        .default(5_000, "5s"),
    )
    .addOption(
      new Option(
        "--table <table[=bucket]>",
        "a table the hub accepts into a bucket (default: default) when a writer of that bucket first pushes it; other new tables need an admin token (repeat)",
      ).argParser(tableSpec),
    )
    .addOption(maxDriftOption())
    .addOption(
      new Option(
        "--busy-timeout <duration>",
        "how long the daemon's connection waits for another program's write lock (it blocks every endpoint meanwhile)",
      )
        .argParser(duration)
        .default(20, "20ms"),
    )
    .addOption(
      new Option(
        "--lock-wait <duration>",
        "how long a sync request waits, off the event loop, for another program's write lock before 503 (and /readyz fails past it)",
      )
        .argParser(duration)
        .default(2_000, "2s"),
    )
    .addOption(
      new Option(
        "--max-live <n>",
        "live sockets (GET /v1/live) open at once in all (default 1000, at most half the open-file limit)",
      ).argParser(positiveInt),
    )
    .addOption(
      new Option("--max-live-per-token <n>", "live sockets open at once per token")
        .argParser(positiveInt)
        .default(100),
    )
    .addOption(
      new Option(
        "--auth-failures <n>",
        "requests with a wrong or missing token per address per minute; past it the address gets 429 until the minute ends",
      )
        .argParser(positiveInt)
        .default(60),
    )
    .addOption(
      new Option(
        "--metrics-token <token>",
        "GET /metrics needs this bearer token (default: /metrics is public)",
      ),
    )
    .addOption(new Option("--tls-cert <file>", "serve HTTPS with this PEM certificate chain"))
    .addOption(new Option("--tls-key <file>", "the PEM private key of --tls-cert"))
    .addOption(
      new Option("--redis <url>", "join a mesh over Redis Streams with the hub's log (see tidewire mesh)"),
    )
    .addOption(
      new Option(
        "--mesh-bucket <bucket>",
        "a bucket the mesh carries (repeat; default: the hub's buckets)",
      ).argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), nonEmpty(v)]),
    )
    .addOption(new Option("--concurrency <n>", "jobs run at once (default 10)").argParser(positiveInt))
    .addOption(
      new Option(
        "--trace",
        "OpenTelemetry spans (jobs, sync, hub requests) to the SDK this process registered, e.g. node --import ./otel.mjs; needs @opentelemetry/api",
      ),
    )
    .addOption(
      new Option("--log-level <level>", "least severe level logged (debug with --verbose)")
        .choices(LOG_LEVELS)
        .default("info"),
    )
    .action(async (flags: ServeFlags, cmd: Command) => {
      const verbose = cmd.optsWithGlobals().verbose === true;
      const logLevel =
        verbose && cmd.getOptionValueSource("logLevel") === "default" ? "debug" : flags.logLevel;
      if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined))
        cmd.error("error: --tls-cert and --tls-key go together", { exitCode: 2 });
      if (flags.meshBucket && !flags.redis) cmd.error("error: --mesh-bucket needs --redis", { exitCode: 2 });
      const tables = new Map<string, string>();
      for (const { table, bucket } of flags.table ?? []) {
        if ((tables.get(table) ?? bucket) !== bucket)
          cmd.error(`error: --table ${table} is given two buckets`, { exitCode: 2 });
        tables.set(table, bucket);
      }
      // Before the daemon opens anything, so its first job and request are traced too.
      if (flags.trace && !(await enableTracing()))
        throw new TidewireError(
          "--trace needs the package @opentelemetry/api installed beside tidewire",
          "ERR_NO_OTEL_API",
        );
      const mesh = flags.redis ? { redis: flags.redis, buckets: flags.meshBucket } : undefined;
      const tls =
        flags.tlsCert && flags.tlsKey ? { certFile: flags.tlsCert, keyFile: flags.tlsKey } : undefined;
      // A signal while the daemon starts (it may be listening, and have said so) must stop it
      // cleanly too, not kill it: keep it until stopOnSignals is in place, then hand it on. A
      // second one exits at once, as it does later, so a start that hangs can still be stopped.
      const early: NodeJS.Signals[] = [];
      const keep = (signal: NodeJS.Signals) => {
        if (early.length > 0) process.exit(1);
        early.push(signal);
      };
      for (const signal of SIGNALS) process.on(signal, keep);
      const daemon = await startDaemon({
        dbPath: flags.db,
        host: flags.host,
        port: flags.port,
        concurrency: flags.concurrency,
        logLevel,
        token: flags.token,
        tokensFile: flags.tokensFile,
        insecure: flags.insecure,
        rateLimitPerSecond: flags.rateLimit,
        requestTimeoutMs: flags.requestTimeout,
        keepAliveTimeoutMs: flags.keepAliveTimeout,
        tables: Object.fromEntries(tables),
        busyTimeoutMs: Math.round(flags.busyTimeout),
        lockWaitMs: Math.round(flags.lockWait),
        metricsToken: flags.metricsToken,
        maxLive: flags.maxLive,
        maxLivePerToken: flags.maxLivePerToken,
        authFailures: flags.authFailures,
        syncIntervalMs: flags.syncInterval,
        pingIntervalMs: flags.pingInterval,
        remoteScanMs: flags.remoteScan,
        tls,
        mesh,
        maxDriftMs: flags.maxDrift,
      }).catch((err: unknown) => {
        for (const signal of SIGNALS) process.off(signal, keep);
        throw err;
      });
      // The real handler goes on before `keep` comes off: a signal's listeners dropping to none
      // closes Node's watcher, and a signal pending in it then is lost.
      stopOnSignals(daemon);
      for (const signal of SIGNALS) process.off(signal, keep);
      for (const signal of early) process.emit(signal, signal);
    });
}

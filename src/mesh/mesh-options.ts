/**
 * MeshOptions: what a MeshMember is configured with, checked.
 *
 * Contract: `meshSettings` refuses every bad option with an
 * InvalidArgumentError naming it, before anything connects, and fills the
 * defaults. Buckets and the prefix become parts of Redis keys, so they must
 * not hold white space.
 */
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import type { Logger } from "../log.js";
import { Peers } from "../peers/peers.js";
import type { Replica } from "../replica/replica.js";
import { DEFAULT_BUCKET } from "../replica/track.js";
import { checkInteger, checkName, checkObject } from "../validate.js";

export type MeshLogger = Pick<Logger, "debug" | "info" | "warn" | "error">;

/**
 * An ioredis client as the public types name it: naming ioredis's own `Redis`
 * would make them fail to compile wherever ioredis (an optional peer
 * dependency) is not installed. The methods are those `meshSettings` checks.
 */
export interface RedisClient {
  duplicate(...args: never[]): unknown;
  xadd(...args: never[]): unknown;
  client(...args: never[]): unknown;
}

export interface MeshMemberOptions {
  /** A Redis URL (redis://host:port/db) or an ioredis client (left open by `stop`). */
  redis: string | RedisClient;
  /** Buckets to publish and read (default: every bucket the replica tracks, or "default"). */
  buckets?: string[];
  /** First part of every key (default "tidewire"). */
  prefix?: string;
  /** Approximate MAXLEN each stream is trimmed to, in entries (default 100 000). */
  maxLen?: number;
  /** Changes per published entry (default 500). */
  batchSize?: number;
  /** Longest a blocking read waits, ms (default 1000; `stop` and new peers interrupt it). */
  blockMs?: number;
  /** Membership refresh, peer discovery and loss checks, ms (default 1000). */
  heartbeatMs?: number;
  /** Pause between log polls when there was nothing to publish, ms (default 5). */
  pollMs?: number;
  /** Where cursors are kept (default: a CursorStore on the replica's store, written with each apply). */
  cursors?: CursorStore;
  logger?: MeshLogger;
  /** Called at every heartbeat for each member of a bucket seen in Redis. */
  onPeerSeen?: (nodeId: string, bucket: string) => void;
  /**
   * A peer registry to keep in step: members seen are added and marked up
   * (`Peers.seen`), and a member removed from it (`tidewire peers remove`,
   * from any process) is removed from the mesh with its cursors.
   */
  peers?: Peers;
}

export interface MeshSettings {
  redis: string | RedisClient;
  buckets: string[];
  prefix: string;
  maxLen: number;
  batchSize: number;
  blockMs: number;
  heartbeatMs: number;
  pollMs: number;
  cursors: CursorStore | undefined;
  logger: MeshLogger;
  onPeerSeen: ((nodeId: string, bucket: string) => void) | undefined;
  peers: Peers | undefined;
}

const NOOP = () => {};
const SILENT = { debug: NOOP, info: NOOP, warn: NOOP, error: NOOP } as unknown as MeshLogger;

export function meshSettings(replica: Replica, options: MeshMemberOptions): MeshSettings {
  checkObject("options", options);
  const r = options.redis;
  if (!isRedisClient(r) && !(typeof r === "string" && /^rediss?:\/\/\S*$/.test(r)))
    throw new InvalidArgumentError("redis", "must be a redis:// or rediss:// URL or an ioredis client");
  const buckets = options.buckets ?? [...new Set(replica.tables().map((t) => t.bucket))];
  if (!Array.isArray(buckets)) throw new InvalidArgumentError("buckets", "must be an array of bucket names");
  for (const b of buckets) checkKeyPart("buckets", b);
  if (options.cursors !== undefined && !(options.cursors instanceof CursorStore))
    throw new InvalidArgumentError("cursors", "must be a CursorStore");
  if (options.onPeerSeen !== undefined && typeof options.onPeerSeen !== "function")
    throw new InvalidArgumentError("onPeerSeen", "must be a function");
  if (options.peers !== undefined && !(options.peers instanceof Peers))
    throw new InvalidArgumentError("peers", "must be a Peers registry");
  const logger = options.logger ?? SILENT;
  const methods = ["debug", "info", "warn", "error"] as const;
  if (typeof logger !== "object" || logger === null || methods.some((m) => typeof logger[m] !== "function"))
    throw new InvalidArgumentError("logger", "must have debug, info, warn and error methods");
  return {
    redis: r,
    buckets: buckets.length ? [...new Set(buckets)].sort() : [DEFAULT_BUCKET],
    prefix: checkKeyPart("prefix", options.prefix ?? "tidewire"),
    maxLen: checkInteger("maxLen", options.maxLen ?? 100_000, 1),
    batchSize: checkInteger("batchSize", options.batchSize ?? 500, 1),
    blockMs: checkInteger("blockMs", options.blockMs ?? 1000, 1),
    heartbeatMs: checkInteger("heartbeatMs", options.heartbeatMs ?? 1000, 1),
    pollMs: checkInteger("pollMs", options.pollMs ?? 5, 1),
    cursors: options.cursors,
    logger,
    onPeerSeen: options.onPeerSeen,
    peers: options.peers,
  };
}

function checkKeyPart(argument: string, value: unknown): string {
  const v = checkName(argument, value);
  if (/\s/.test(v))
    throw new InvalidArgumentError(argument, `must not hold white space, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * An ioredis client, told by the calls the mesh makes on it: `instanceof Redis` would load
 * ioredis for every mesh, even one given a URL it has not connected yet.
 */
function isRedisClient(r: unknown): r is RedisClient {
  const c = r as Partial<Record<"duplicate" | "xadd" | "client", unknown>> | null;
  return (
    typeof c === "object" &&
    c !== null &&
    [c.duplicate, c.xadd, c.client].every((f) => typeof f === "function")
  );
}

/**
 * RedisLink: the two Redis connections of a mesh member: one for commands,
 * one of its own for blocking reads (a blocked connection answers nothing
 * else, so heartbeats and publishing must not wait behind it).
 *
 * Contract: `open` connects both, or throws a TidewireError naming the URL
 * (password hidden) when Redis cannot be reached. `wake` ends a blocking read
 * at once (CLIENT UNBLOCK from the command connection), so a new peer is read
 * and `stop` never waits out a block. `close` disconnects what it opened: a
 * client handed in by the caller stays open, only its duplicate is closed.
 */
import type { Redis } from "ioredis";
import { TidewireError } from "../errors.js";
import { loadOptional } from "../optional-deps.js";
import type { MeshLogger, RedisClient } from "./mesh-options.js";

export class RedisLink {
  private blockingId: number | null = null;

  private constructor(
    readonly command: Redis,
    readonly blocking: Redis,
    private readonly ownsCommand: boolean,
  ) {}

  static async open(redis: string | RedisClient, log: MeshLogger): Promise<RedisLink> {
    const owns = typeof redis === "string";
    // A given client is an ioredis one: meshSettings checked it has the methods used here.
    const command = typeof redis === "string" ? await newClient(redis) : (redis as Redis);
    // ioredis reconnects by itself and the loops report failed calls: the events only go to debug.
    if (owns) command.on("error", (err) => log.debug({ err: err.message }, "mesh: Redis connection"));
    const blocking = command.duplicate({ lazyConnect: true, maxRetriesPerRequest: null });
    blocking.on("error", (err) => log.debug({ err: err.message }, "mesh: blocking connection"));
    const link = new RedisLink(command, blocking, owns);
    try {
      if (owns) await command.connect();
      await blocking.connect();
      link.blockingId = Number(await blocking.client("ID"));
    } catch (err) {
      link.close();
      const where = owns ? redact(redis) : "(the given client)";
      throw new TidewireError(
        `Redis at ${where} is unreachable: ${(err as Error).message}`,
        "ERR_REDIS_UNREACHABLE",
      );
    }
    // A reconnected connection has a new id.
    blocking.on("ready", () => {
      blocking.client("ID").then(
        (id) => {
          link.blockingId = Number(id);
        },
        () => {},
      );
    });
    return link;
  }

  async wake(): Promise<void> {
    if (this.blockingId === null) return;
    try {
      await this.command.client("UNBLOCK", this.blockingId);
    } catch {
      // The read ends by itself after its block time.
    }
  }

  close(): void {
    this.blockingId = null;
    this.blocking.disconnect();
    if (this.ownsCommand) this.command.disconnect();
  }
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(the given URL)";
  }
}

/** ioredis is imported here, on the first mesh that connects by URL, not when tidewire loads. */
async function newClient(url: string): Promise<Redis> {
  const { Redis: Client } = await loadOptional("ioredis", "The Redis mesh", () => import("ioredis"));
  return new Client(url, { lazyConnect: true, maxRetriesPerRequest: 3 });
}

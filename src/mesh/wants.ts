/**
 * Wants: the fill requests of a mesh member, both ways. Incoming, on its own
 * `{…}:wants` streams: each asks its Publisher to publish a bucket again from
 * a log cursor. Outgoing, the StreamReader's requests: XADDed to the
 * publishers' wants streams (capped at WANTS_MAXLEN entries).
 *
 * Contract: `open` reads each own wants stream from its last entry, so a
 * request made while this member was down is not acted on (the reader asks
 * again when its gap makes no progress). A malformed request is logged and
 * passed over.
 */
import type { Redis } from "ioredis";
import type { MeshLogger } from "./mesh-options.js";
import type { Publisher } from "./publisher.js";
import { decodeWants, encodeWants, type RawFields, START_ID, wantsKey } from "./stream-entry.js";
import type { FillRequest } from "./stream-reader.js";

const WANTS_MAXLEN = 1000;

export class Wants {
  /** Own wants stream key → the last id read, and the bucket it is for. */
  private readonly last = new Map<string, string>();
  private readonly bucketOf = new Map<string, string>();

  constructor(
    private readonly prefix: string,
    private readonly nodeId: string,
    private readonly publisher: Publisher,
    private readonly log: MeshLogger,
  ) {}

  /** Starts reading each own wants stream after its last entry. */
  async open(command: Redis, buckets: string[]): Promise<void> {
    for (const b of buckets) {
      const key = wantsKey(this.prefix, b, this.nodeId);
      const last = (await command.xrevrange(key, "+", "-", "COUNT", 1))[0];
      this.last.set(key, last ? last[0] : START_ID);
      this.bucketOf.set(key, b);
    }
  }

  /** The own wants streams and the ids to XREAD them after. */
  keys(): string[] {
    return [...this.last.keys()];
  }

  ids(): string[] {
    return [...this.last.values()];
  }

  has(key: string): boolean {
    return this.last.has(key);
  }

  /** Acts on requests read from own wants stream `key`: the publisher rewinds. */
  take(key: string, entries: Array<[string, RawFields]>): void {
    const bucket = this.bucketOf.get(key) as string;
    for (const [id, fields] of entries) {
      this.last.set(key, id);
      try {
        const w = decodeWants(fields);
        this.log.info({ bucket, from: String(w.from), by: w.by }, "mesh: publishing again for a peer");
        this.publisher.rewind(bucket, w.from);
      } catch (err) {
        this.log.error({ bucket, id, err: (err as Error).message }, "mesh: wants entry refused");
      }
    }
  }

  /** Sends the reader's fill requests to the publishers asked. */
  async send(command: Redis, requests: FillRequest[]): Promise<void> {
    if (requests.length === 0) return;
    const p = command.pipeline();
    for (const q of requests) {
      const key = wantsKey(this.prefix, q.bucket, q.peer);
      p.xadd(key, "MAXLEN", "~", WANTS_MAXLEN, "*", ...encodeWants(q.from, this.nodeId));
    }
    await p.exec();
  }
}

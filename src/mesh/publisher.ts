/**
 * Publisher: the writing half of a mesh member: appends the replica's own
 * changes to its stream of each bucket.
 *
 * Contract: `step` reads one page of the log per bucket after the publish
 * cursor, leaves out changes whose origin is a mesh peer of that bucket (the
 * peer publishes those itself, and every reader tails it), and appends the
 * rest as one entry with `XADD … MAXLEN ~ maxLen`. An entry's `since` is the
 * `cursor` of the previous entry of the run, even when pages in between
 * carried only peers' changes and were not published: readers see an
 * unbroken chain, and a hole in it means an entry was lost. `rewind` makes
 * the next step publish again from an earlier cursor (a reader's fill
 * request, or the stream lost with Redis: a rewind to 0 is an initial sync
 * through Redis). The publish cursor is saved (debounced) under
 * `{ peer: "mesh:<prefix>", bucket, direction: "push" }`; losing its last
 * moves to a crash only publishes some changes twice.
 */
import type { Redis } from "ioredis";
import type { CursorStore } from "../cursor-store.js";
import { meshPublished } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import type { PublishState } from "./mesh-status.js";
import { encodeEntry, streamKey } from "./stream-entry.js";

interface BucketState {
  bucket: string;
  key: string;
  /** Where the next page is read from. */
  readFrom: bigint;
  /** The `cursor` of the last entry published: the next entry's `since`. */
  chain: bigint;
  idle: boolean;
  rewindTo: bigint | null;
}

interface Deps {
  replica: Replica;
  cursors: CursorStore;
  prefix: string;
  buckets: string[];
  maxLen: number;
  batchSize: number;
  /** Whether `origin` is a mesh peer of `bucket` (its changes are its to publish). */
  isPeer: (origin: string, bucket: string) => boolean;
}

export class Publisher {
  private readonly states: BucketState[];
  private readonly cursorPeer: string;

  constructor(private readonly deps: Deps) {
    this.cursorPeer = `mesh:${deps.prefix}`;
    this.states = deps.buckets.map((bucket) => {
      const saved = BigInt(deps.cursors.getOrStart(this.key(bucket)));
      return {
        bucket,
        key: streamKey(deps.prefix, bucket, deps.replica.nodeId),
        readFrom: saved,
        chain: saved,
        idle: false,
        rewindTo: null,
      };
    });
  }

  /** Publishes at most one page per bucket; returns the changes published (pages that moved count too). */
  async step(redis: Redis): Promise<{ moved: boolean; published: Array<[bucket: string, changes: number]> }> {
    const published: Array<[string, number]> = [];
    let moved = false;
    for (const s of this.states) {
      if (s.rewindTo !== null) {
        if (s.rewindTo < s.readFrom) {
          s.readFrom = s.rewindTo;
          s.chain = s.rewindTo;
          s.idle = false;
          this.deps.cursors.set(this.key(s.bucket), s.chain);
        }
        s.rewindTo = null;
      }
      const page = this.deps.replica.changesSince(s.readFrom, {
        buckets: [s.bucket],
        limit: this.deps.batchSize,
      });
      const own = page.changes.filter((c) => !this.deps.isPeer(c.origin, s.bucket));
      const next = BigInt(page.cursor);
      if (own.length > 0) {
        await redis.xadd(
          s.key,
          "MAXLEN",
          "~",
          this.deps.maxLen,
          "*",
          ...encodeEntry(String(s.chain), page.cursor, own),
        );
        // A rewind asked for while the XADD was in flight is applied by the next step.
        s.chain = next;
        this.deps.cursors.set(this.key(s.bucket), s.chain);
        meshPublished.inc({ bucket: s.bucket }, own.length);
        published.push([s.bucket, own.length]);
      }
      if (next !== s.readFrom) moved = true;
      s.readFrom = next;
      s.idle = own.length === 0 && !page.hasMore;
    }
    return { moved, published };
  }

  /** The next step publishes again from `from` (only ever moves back). */
  rewind(bucket: string, from: bigint): void {
    const s = this.states.find((x) => x.bucket === bucket);
    if (!s) return;
    if (s.rewindTo === null || from < s.rewindTo) s.rewindTo = from;
  }

  /** The stream was found missing while entries had been published to it: publish it all again. */
  lost(bucket: string): boolean {
    const s = this.states.find((x) => x.bucket === bucket);
    if (!s || s.chain === 0n) return false;
    this.rewind(bucket, 0n);
    return true;
  }

  status(): PublishState[] {
    return this.states.map((s) => ({
      bucket: s.bucket,
      cursor: String(s.chain),
      idle: s.idle && s.rewindTo === null,
    }));
  }

  private key(bucket: string) {
    return { peer: this.cursorPeer, bucket, direction: "push" as const };
  }
}

/**
 * MeshMember: makes one Replica a member of a mesh over Redis
 * Streams, with no hub.
 *
 * Contract: `start()` registers the member, then runs three loops until
 * `stop()`: publish (the Publisher appends the replica's own changes to
 * `{prefix}:{bucket}:{nodeId}`), read (one blocking XREAD on a connection of
 * its own over every peer's stream and this member's wants streams; the
 * StreamReader applies and moves cursors kept in the CursorStore) and
 * heartbeat (membership in `{prefix}:{bucket}:members`, peers discovered
 * there or from saved cursors, streams found lost). Redis may lose
 * everything: a member whose own stream or membership vanished publishes its
 * log again from 0, and a reader that finds a hole asks the publisher for a
 * fill; nothing missing is ever passed over silently. `stop()` finishes the
 * batch in flight, flushes cursors and closes the connections it opened.
 * Events: "published", "applied" (per entry), "gap", "refused", "peer",
 * "failed" (a Redis call failed; the loop retries).
 */
import { EventEmitter } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { exponentialDelay } from "../backoff.js";
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { meshGaps } from "../metrics.js";
import { checkNodeId, isNodeId } from "../node-id.js";
import type { Replica } from "../replica/replica.js";
import { MemberRegistry } from "./member-registry.js";
import { type MeshLogger, type MeshMemberOptions, type MeshSettings, meshSettings } from "./mesh-options.js";
import type { MeshState, MeshStatus } from "./mesh-status.js";
import { Publisher } from "./publisher.js";
import { RedisLink } from "./redis-link.js";
import { membersKey, parsePosition, type RawFields, START_ID, streamKey } from "./stream-entry.js";
import { type AppliedEntry, type Gap, type RefusedEntry, StreamReader, type Tail } from "./stream-reader.js";
import { Wants } from "./wants.js";

export type { MeshLogger, MeshMemberOptions } from "./mesh-options.js";
export type { MeshState, MeshStatus } from "./mesh-status.js";

type Events = {
  published: [bucket: string, changes: number];
  applied: [AppliedEntry];
  gap: [Gap];
  refused: [RefusedEntry];
  peer: [nodeId: string, bucket: string];
  failed: [Error];
};

/** Entries per stream per XREAD. */
const READ_COUNT = 64;

export class MeshMember extends EventEmitter<Events> {
  readonly replica: Replica;
  readonly buckets: string[];
  readonly prefix: string;
  private readonly settings: MeshSettings;
  private readonly cursors: CursorStore;
  private readonly ownsCursors: boolean;
  private readonly log: MeshLogger;
  private readonly removed = new Set<string>();
  /** Members this transport put in the registry: one missing from it now was removed there. */
  private readonly members: MemberRegistry;
  private readonly counts = { published: 0, received: 0, applied: 0, gaps: 0, refused: 0 };
  private readonly publisher: Publisher;
  private readonly reader: StreamReader;
  private link: RedisLink | null = null;
  private readonly wants: Wants;
  private state: MeshState = "stopped";
  private loops: Promise<unknown> | null = null;
  private abort = new AbortController();
  private publishing: Promise<unknown> = Promise.resolve();
  private lastError: string | undefined;

  constructor(replica: Replica, options: MeshMemberOptions) {
    super();
    this.settings = meshSettings(replica, options);
    this.members = new MemberRegistry(this.settings.peers);
    this.replica = replica;
    this.buckets = this.settings.buckets;
    this.prefix = this.settings.prefix;
    this.log = this.settings.logger;
    this.ownsCursors = this.settings.cursors === undefined;
    this.cursors = this.settings.cursors ?? new CursorStore(replica.store, { flushIntervalMs: 1000 });
    this.reader = new StreamReader({
      replica,
      cursors: this.cursors,
      atomic: this.ownsCursors,
      prefix: this.prefix,
      gapRetryMs: Math.max(10 * this.settings.heartbeatMs, 200),
    });
    this.publisher = new Publisher({
      replica,
      cursors: this.cursors,
      prefix: this.prefix,
      buckets: this.buckets,
      maxLen: this.settings.maxLen,
      batchSize: this.settings.batchSize,
      isPeer: (origin, bucket) => origin !== replica.nodeId && this.reader.has(origin, bucket),
    });
    this.wants = new Wants(this.prefix, replica.nodeId, this.publisher, this.log);
  }

  get nodeId(): string {
    return this.replica.nodeId;
  }

  /** Connects, registers this member and discovers its peers, then runs until `stop`. */
  async start(): Promise<void> {
    if (this.state !== "stopped") throw new TidewireError(`the transport is ${this.state}`, "ERR_STATE");
    this.state = "running";
    this.abort = new AbortController();
    try {
      this.link = await RedisLink.open(this.settings.redis, this.log);
      // Peers known from saved cursors are read even when Redis lost the members hash.
      for (const c of this.cursors.getAll()) {
        if (c.direction !== "pull" || c.peer === this.nodeId || !this.buckets.includes(c.bucket)) continue;
        if (parsePosition(c.value)) this.reader.add(c.peer, c.bucket);
      }
      await this.wants.open(this.link.command, this.buckets);
      await this.heartbeat();
    } catch (err) {
      this.link?.close();
      this.link = null;
      this.state = "stopped";
      throw err;
    }
    this.log.info({ nodeId: this.nodeId, buckets: this.buckets, prefix: this.prefix }, "mesh: started");
    this.loops = Promise.all([this.publishLoop(), this.readLoop(), this.heartbeatLoop()]);
  }

  /** Finishes the batch in flight, flushes cursors, closes the connections it opened. */
  async stop(): Promise<void> {
    if (this.state !== "running") return;
    this.state = "stopping";
    this.abort.abort();
    await this.wake();
    await this.loops;
    await this.publishing.catch(() => {});
    this.cursors.flushDirty();
    this.link?.close();
    this.link = null;
    this.state = "stopped";
    this.log.info({ nodeId: this.nodeId, ...this.counts }, "mesh: stopped");
  }

  /** Publishes everything pending now; resolves with the changes published. */
  async publishNow(): Promise<number> {
    if (!this.link) throw new TidewireError("the transport is not started", "ERR_STATE");
    let total = 0;
    for (;;) {
      const r = await this.publishStep();
      total += r.published.reduce((n, [, c]) => n + c, 0);
      if (!r.moved && r.published.length === 0) return total;
    }
  }

  /** Stops reading `nodeId` and deletes every cursor this replica keeps for it. */
  removePeer(nodeId: string): number {
    checkNodeId("nodeId", nodeId);
    if (nodeId === this.nodeId) throw new InvalidArgumentError("nodeId", "is this replica's own node id");
    this.removed.add(nodeId);
    this.reader.remove(nodeId);
    const deleted = this.cursors.deletePeer(nodeId);
    void this.wake();
    this.log.info({ peer: nodeId, cursors: deleted }, "mesh: peer removed");
    return deleted;
  }

  get status(): MeshStatus {
    return {
      state: this.state,
      nodeId: this.nodeId,
      buckets: this.buckets,
      published: this.publisher.status(),
      peers: this.reader.list().map((t: Tail) => ({
        nodeId: t.peer,
        bucket: t.bucket,
        streamId: t.pos.streamId,
        cursor: String(t.pos.cursor),
        gap: t.gap !== null,
      })),
      counts: { ...this.counts },
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  private publishStep() {
    const run = this.publishing.then(() => this.publisher.step((this.link as RedisLink).command));
    this.publishing = run.catch(() => {});
    return run.then((r) => {
      for (const [bucket, n] of r.published) {
        this.counts.published += n;
        this.emit("published", bucket, n);
      }
      return r;
    });
  }

  // Writes come from any SQLite client (the shell, other processes) through
  // triggers, so there is no in-process event to wait on: the log is polled.
  // A poll that finds nothing is one seek in the log's sequence index, so a
  // few milliseconds between polls costs little and keeps publishing prompt.
  private async publishLoop(): Promise<void> {
    let failures = 0;
    while (this.state === "running") {
      try {
        const r = await this.publishStep();
        failures = 0;
        if (r.published.length) continue;
        // Pages of peers' changes only: no I/O happened, so yield before reading on.
        if (r.moved) await new Promise((res) => setImmediate(res));
        else await this.pause(this.settings.pollMs);
      } catch (err) {
        await this.pause(this.failed(err, ++failures));
      }
    }
  }

  private async readLoop(): Promise<void> {
    let failures = 0;
    while (this.state === "running") {
      const tails = this.reader.list();
      const keys = [...tails.map((t) => t.key), ...this.wants.keys()];
      const ids = [...tails.map((t) => t.pos.streamId), ...this.wants.ids()];
      let res: Array<[string, Array<[string, RawFields]>]> | null;
      try {
        const blocking = (this.link as RedisLink).blocking;
        res = (await blocking.xread(
          "COUNT",
          READ_COUNT,
          "BLOCK",
          this.settings.blockMs,
          "STREAMS",
          ...keys,
          ...ids,
        )) as Array<[string, Array<[string, RawFields]>]> | null;
        failures = 0;
      } catch (err) {
        if (this.state !== "running") break;
        await this.pause(this.failed(err, ++failures));
        continue;
      }
      try {
        for (const [key, entries] of res ?? []) {
          if (this.wants.has(key)) this.wants.take(key, entries);
          else this.handle(key, entries);
        }
        await this.sendRequests();
      } catch (err) {
        // A stream whose batch failed (the database busy past its retries, say) kept its
        // position: the next read returns the same entries.
        await this.pause(this.failed(err, ++failures));
      }
    }
  }

  private async heartbeatLoop(): Promise<void> {
    let failures = 0;
    while (this.state === "running") {
      await this.pause(this.settings.heartbeatMs);
      if (this.state !== "running") break;
      try {
        await this.heartbeat();
        failures = 0;
      } catch (err) {
        await this.pause(this.failed(err, ++failures));
      }
    }
  }

  /**
   * Rewrites this member's field in each bucket's members hash and reads the
   * others. HSET answers 1 when the field was not there: Redis lost it (or
   * this is the first heartbeat ever), so the stream may be gone too; a
   * stream missing after entries were published is lost for sure. Either way
   * the log is published again from 0, and readers skip what they hold.
   */
  private async heartbeat(): Promise<void> {
    const p = (this.link as RedisLink).command.pipeline();
    for (const b of this.buckets) {
      p.hset(membersKey(this.prefix, b), this.nodeId, Date.now());
      p.hgetall(membersKey(this.prefix, b));
      p.exists(streamKey(this.prefix, b, this.nodeId));
    }
    const tails = this.reader.list().filter((t) => t.pos.streamId !== START_ID);
    for (const t of tails) p.exists(t.key);
    const res = (await p.exec()) ?? [];
    const value = (i: number) => {
      const [err, v] = res[i] ?? [new Error("no reply")];
      if (err) throw err;
      return v;
    };
    let woke = false;
    this.buckets.forEach((b, i) => {
      const added = value(3 * i) as number;
      const members = value(3 * i + 1) as Record<string, string>;
      const exists = value(3 * i + 2) as number;
      if ((added === 1 || exists === 0) && this.publisher.lost(b)) {
        this.counts.gaps++;
        meshGaps.inc({ bucket: b });
        this.log.warn({ bucket: b }, "mesh: own stream lost in Redis; publishing the log again from 0");
      }
      for (const peer of Object.keys(members)) {
        if (peer === this.nodeId || this.removed.has(peer) || !isNodeId(peer)) continue;
        if (!this.members.seen(peer, b, Number(members[peer]))) {
          // Removed from the registry since: it leaves the mesh.
          this.removePeer(peer);
          continue;
        }
        if (this.reader.add(peer, b)) {
          woke = true;
          this.log.info({ peer, bucket: b }, "mesh: peer found");
          this.emit("peer", peer, b);
        }
        try {
          this.settings.onPeerSeen?.(peer, b);
        } catch (err) {
          this.log.warn({ peer, bucket: b, err: (err as Error).message }, "mesh: onPeerSeen threw");
        }
      }
    });
    tails.forEach((t, i) => {
      if ((value(3 * this.buckets.length + i) as number) !== 0) return;
      const gap = this.reader.streamGone(t);
      if (gap) this.gap(gap);
    });
    this.reader.retryGaps(Date.now());
    await this.sendRequests();
    if (woke) await this.wake();
  }

  private handle(key: string, entries: Array<[string, RawFields]>): void {
    const r = this.reader.handle(key, entries);
    for (const a of r.applied) {
      this.counts.received += a.received;
      this.counts.applied += a.applied;
      this.emit("applied", a);
    }
    for (const x of r.refused) {
      this.counts.refused++;
      this.log.error(
        { peer: x.peer, bucket: x.bucket, id: x.streamId, err: x.error.message },
        "mesh: entry refused",
      );
      this.emit("refused", x);
    }
    for (const g of r.gaps) this.gap(g);
  }

  private gap(g: Gap): void {
    this.counts.gaps++;
    this.log.warn(g, "mesh: gap in a peer's stream; asking it to publish again");
    this.emit("gap", g);
  }

  private async sendRequests(): Promise<void> {
    if (this.link) await this.wants.send(this.link.command, this.reader.requests.splice(0));
  }

  /** Interrupts the blocking read so it is issued again (new peers) or the loop sees `stop`. */
  private async wake(): Promise<void> {
    await this.link?.wake();
  }

  private failed(err: unknown, failures: number): number {
    const e = err instanceof Error ? err : new Error(String(err));
    this.lastError = e.message;
    this.log.warn({ err: e.message }, "mesh: Redis call failed; retrying");
    this.emit("failed", e);
    return exponentialDelay(failures, { baseMs: 50, maxMs: 5000 });
  }

  private async pause(ms: number): Promise<void> {
    try {
      await delay(ms, undefined, { signal: this.abort.signal });
    } catch {
      // Aborted by stop().
    }
  }
}

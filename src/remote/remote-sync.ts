/**
 * RemoteSync: pushes a replica's tracked tables to one remote target — a
 * full copy the first time (or on resync, or when the tables' shape
 * changed), then exactly the changes since the target's acknowledged cursor.
 *
 * Contract: every payload is spooled in the outbox before it is sent; the
 * target's cursor moves only after the target accepted the payload (or
 * already had its sync key); a failure defers the payload, leaves the
 * cursor, and the next cycle sends the spooled payloads first, in order,
 * before reading anything new. So a crash anywhere — before, during or
 * after the apply — ends in each payload applied once. Incremental payloads
 * carry whole current rows (or deletes) for the keys the change log names,
 * so they are idempotent and never depend on rows the target may lack.
 * A full push spools only its decision and copies the rows from the local
 * file in one target transaction (full-push.ts); spooling, sending and
 * moving the cursor are delivery.ts's. The cursor value is
 * `<sequence>@<shape>`: a tracked table gaining a column, a changed
 * declared type, a changed `--pg-type` override or a changed index changes
 * the shape, and the next push is a full one. A payload the target refused
 * for its data (DATA_REFUSED) is never sent again: it and any payload
 * spooled behind it are dropped and the cursor deleted, so the next cycle
 * is a full push from the current rows, which chooses PostgreSQL column
 * types from the data as it is then (targets/postgres-plan.ts). The pull direction is
 * pull.ts's; `sync` runs the configured direction(s), pulling before it
 * pushes, so a full push never overwrites edits on the target not yet pulled,
 * and the incremental push leaves out what was pulled from the target.
 */
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import { remoteSyncDuration, remoteSyncLastSuccess, remoteSyncTotal } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
import { fromWire, type SqlValue } from "../replica/values.js";
import { detached, inSpan } from "../trace.js";
import { checkFlag, checkInteger, checkName, checkObject } from "../validate.js";
import { CHANGES_TABLE } from "./capture.js";
import { Catalog } from "./catalog.js";
import { Delivery, type PushCursor, type Stat } from "./delivery.js";
import { FullPush } from "./full-push.js";
import { type LoopOptions, SyncLoop } from "./loop.js";
import { openTarget } from "./open-target.js";
import { makePayload, type Payload, type TableSchema } from "./payload.js";
import { Puller, type PullResult } from "./pull.js";
import {
  type CycleOptions,
  checkBuckets,
  checkCycleOptions,
  checkDirection,
  checkTarget,
  type PushResult,
  type RemoteSyncOptions,
  type SyncDirection,
  type SyncResult,
} from "./push-options.js";
import { Source } from "./source.js";
import { PayloadSpool } from "./spool.js";
import { APPLYING_TABLE, HISTORY_TABLE } from "./sql.js";
import { RemoteError, type RemoteTarget } from "./target.js";
import {
  checkOverrides,
  type Fallback,
  overridesText,
  type PgOverrides,
  parseOverrides,
} from "./targets/postgres-plan.js";
import { encodeValue } from "./values.js";

export type { PullResult } from "./pull.js";
export type {
  PushProgress,
  PushResult,
  RemoteSyncOptions,
  SyncDirection,
  SyncResult,
} from "./push-options.js";

/** The target's own tables: history, and the pull's change table and apply marker. */
const RESERVED = new Set([HISTORY_TABLE, CHANGES_TABLE, APPLYING_TABLE]);

export class RemoteSync {
  readonly target: RemoteTarget;
  readonly direction: SyncDirection;
  private readonly puller: Puller | null;
  private readonly source: Source;
  private readonly spool: PayloadSpool;
  private readonly delivery: Delivery;
  private readonly pushCursor: PushCursor;
  private readonly full: FullPush;
  private readonly cursors: CursorStore;
  private readonly cursorKey: { peer: string; bucket: string; direction: "push" };
  private readonly buckets: string[] | undefined;
  private readonly tables: string[] | undefined;
  private readonly batchSize: number;
  private readonly keepHistory: number;
  private readonly pgTypes: PgOverrides;
  private running: Promise<unknown> | null = null;
  // Each background cycle is a trace of its own, not a child of whatever span started the loop.
  private readonly loop = new SyncLoop(
    (resync) => detached(() => this.sync({ resync })),
    () => (this.direction === "both" ? "sync" : this.direction),
  );

  constructor(
    private readonly replica: Replica,
    options: RemoteSyncOptions,
  ) {
    checkObject("options", options);
    const o = options;
    this.buckets = o.buckets === undefined ? undefined : checkBuckets(o.buckets);
    this.tables = o.tables === undefined ? undefined : checkBuckets(o.tables, "tables");
    this.batchSize = o.batchSize === undefined ? 1000 : checkInteger("batchSize", o.batchSize, 1);
    const chunkRows = o.chunkRows === undefined ? 5000 : checkInteger("chunkRows", o.chunkRows, 1);
    this.keepHistory = o.keepHistory === undefined ? 1000 : checkInteger("keepHistory", o.keepHistory, 0);
    if (o.onProgress !== undefined && typeof o.onProgress !== "function") {
      throw new InvalidArgumentError("onProgress", "must be a function");
    }
    const outboxName = o.outbox === undefined ? "remote" : checkName("outbox", o.outbox);
    this.pgTypes = parseOverrides(o.pgTypes);
    this.target = typeof o.target === "string" ? openTarget(o.target, { d1: o.d1 }) : checkTarget(o.target);
    if (this.pgTypes.size > 0 && this.target.backend !== "postgres") {
      throw new InvalidArgumentError("pg-type", "applies to postgres:// targets only");
    }
    this.cursorKey = {
      peer: this.target.id,
      // A table filter is its own cursor: the other tables' rows were never pushed under it.
      bucket: `${this.buckets ? this.buckets.join(",") : "*"}${this.tables ? `/${this.tables.join(",")}` : ""}`,
      direction: "push",
    };
    checkName("target", this.target.id);
    this.source = new Source(replica.store);
    this.full = new FullPush(replica.store, this.target, new Catalog(replica.store.db), {
      allTables: checkFlag("allTables", o.allTables),
      withViews: checkFlag("withViews", o.withViews),
      pgTypes: this.pgTypes,
      chunkRows,
      keepHistory: this.keepHistory,
      onProgress: o.onProgress,
      tracked: () => replica.tables().map((t) => t.table),
    });
    this.spool = new PayloadSpool(replica.store, outboxName, this.target.id);
    this.cursors = new CursorStore(replica.store, { flushIntervalMs: 0 });
    this.pushCursor = {
      set: (cursor) => {
        this.cursors.set(this.cursorKey, cursor);
        this.cursors.flushDirty();
      },
      drop: () => {
        if (this.cursors.get(this.cursorKey) !== undefined) this.cursors.delete(this.cursorKey);
      },
    };
    this.delivery = new Delivery(this.target, this.spool, this.full, this.pushCursor, this.keepHistory);
    const canPull = typeof this.target.capture === "function";
    this.direction = o.direction === undefined ? (canPull ? "both" : "push") : checkDirection(o.direction);
    if (this.direction !== "push" && !canPull)
      throw new InvalidArgumentError("direction", `${this.target.id} cannot be pulled from; use push`);
    this.puller = canPull
      ? new Puller({
          replica,
          target: this.target,
          cursors: this.cursors,
          bucket: this.cursorKey.bucket,
          batchSize: this.batchSize,
          schemas: () => this.schemas(),
        })
      : null;
  }

  /** The target's acknowledged cursor (`<sequence>@<shape>`), or undefined before the first full push. */
  cursor(): string | undefined {
    return this.cursors.get(this.cursorKey);
  }

  /** Payloads spooled for this target and not yet accepted by it. */
  pending(): number {
    return this.spool.pending().length;
  }

  /** One cycle. `resync` forces a full push. Rejects with a RemoteError when the target failed. */
  push(options: CycleOptions = {}): Promise<PushResult> {
    const resync = checkCycleOptions(options);
    return this.exclusive(() => this.tracedCycle(resync));
  }

  /** Pulls the edits made on the target since the last pull. Rejects with a RemoteError when the target failed. */
  pull(): Promise<PullResult> {
    const puller = this.puller;
    if (!puller) return Promise.reject(new RemoteError(`${this.target.id} cannot be pulled from`));
    return this.exclusive(() => puller.pull());
  }

  /**
   * One cycle in the configured direction(s): "both" pulls, then pushes,
   * then reinstalls capture when the push was a full one (which replaced
   * the target's tables, and whose writes were never captured).
   */
  sync(options: CycleOptions = {}): Promise<SyncResult> {
    const resync = checkCycleOptions(options);
    return this.exclusive(async () => {
      const out: SyncResult = { target: this.target.id, direction: this.direction, pull: null, push: null };
      if (this.puller && this.direction !== "push") out.pull = await this.puller.pull();
      if (this.direction !== "pull") {
        out.push = await this.tracedCycle(resync);
        if (this.puller && this.direction === "both" && out.push.mode === "full") await this.puller.install();
      }
      return out;
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running)
      return Promise.reject(new RemoteError(`a sync with ${this.target.id} is already running`));
    const run = fn().finally(() => {
      this.running = null;
    });
    this.running = run;
    return run;
  }

  /**
   * Runs `sync` every `intervalSeconds` until `stop` (loop.ts). Checkpoints
   * the WAL first, so the file a user copies or inspects is whole.
   */
  start(options: LoopOptions): void {
    this.loop.start(options, () => this.replica.store.checkpoint());
  }

  /** Stops the loop and waits for a cycle in flight. */
  async stop(): Promise<void> {
    this.loop.stop();
    await this.running?.catch(() => {});
  }

  /** Stops, and closes the connection to the target. The replica stays open. */
  async close(): Promise<void> {
    await this.stop();
    await this.target.close();
    if (this.replica.store.isOpen) this.cursors.flushDirty();
  }

  /** A push cycle in a span of its own (when tracing is on). */
  private tracedCycle(resync: boolean): Promise<PushResult> {
    return inSpan(
      "tidewire.remote.push",
      { "tidewire.remote.target": this.target.id, "tidewire.remote.backend": this.target.backend },
      async (span) => {
        const r = await this.cycle(resync);
        span?.set({
          "tidewire.remote.mode": r.mode,
          "tidewire.remote.payloads": r.payloads,
          "tidewire.remote.mutations": r.mutations,
        });
        return r;
      },
    );
  }

  private async cycle(resync: boolean): Promise<PushResult> {
    const started = performance.now();
    const backend = this.target.backend;
    const stat = {
      mode: "incremental" as "full" | "incremental",
      payloads: 0,
      duplicates: 0,
      retried: 0,
      mutations: 0,
      fallbacks: [] as Fallback[],
      warnings: [] as string[],
    };
    try {
      const schemas = this.schemas();
      checkOverrides(this.pgTypes, schemas);
      const shape = this.full.shape(schemas, overridesText(this.pgTypes));
      if (resync)
        for (const id of this.spool.pending()) this.spool.abandon(id, "replaced by a full push (resync)");
      else await this.delivery.sendPending(stat, shape);
      const cursor = this.cursors.get(this.cursorKey);
      const at = cursor?.split("@");
      if (resync || !at || at[1] !== shape) await this.fullPush(schemas, shape, stat);
      else await this.incremental(schemas, shape, at[0]!, stat);
      this.spool.purgeDelivered();
      const durationMs = performance.now() - started;
      remoteSyncTotal.inc({ backend, status: "success" });
      remoteSyncDuration.observe({ backend, status: "success" }, durationMs / 1000);
      remoteSyncLastSuccess.set({ backend }, Date.now() / 1000);
      return { target: this.target.id, backend, ...stat, cursor: this.cursor() ?? "", durationMs };
    } catch (err) {
      remoteSyncTotal.inc({ backend, status: "failure" });
      remoteSyncDuration.observe({ backend, status: "failure" }, (performance.now() - started) / 1000);
      throw err;
    }
  }

  private schemas(): TableSchema[] {
    const wanted = this.buckets ? new Set(this.buckets) : null;
    const only = this.tables ? new Set(this.tables) : null;
    const tables = this.replica
      .tables()
      .filter((t) => (!wanted || wanted.has(t.bucket)) && (!only || only.has(t.table)));
    if (tables.length === 0) {
      throw new RemoteError(
        `${this.replica.store.path} has no tracked tables${wanted || only ? " matching the bucket and table filter" : ""} to push; track some with tidewire init`,
        "ERR_NOTHING_TRACKED",
      );
    }
    for (const t of tables) {
      if (/^sqlite_/i.test(t.table) || RESERVED.has(t.table)) {
        throw new RemoteError(
          `table ${JSON.stringify(t.table)} cannot be pushed: the name is reserved on targets`,
        );
      }
    }
    return this.source.schemas(tables);
  }

  /** Deletes the cursor (until the copy is in, any cycle must copy again), then spools and sends the decision. */
  private async fullPush(schemas: TableSchema[], shape: string, stat: Stat): Promise<void> {
    stat.mode = "full";
    this.pushCursor.drop();
    const upto = String(this.replica.lastSeq());
    await this.delivery.deliver(this.full.decision(schemas, shape, upto), stat);
  }

  private async incremental(schemas: TableSchema[], shape: string, from: string, stat: Stat): Promise<void> {
    const byName = new Map(schemas.map((t) => [t.name, t]));
    let seq = from;
    for (;;) {
      // What was pulled from this target is there already: only the local writes go back.
      const cs = this.replica.changesSince(seq, {
        limit: this.batchSize,
        buckets: this.buckets,
        excludeSource: this.puller?.origin,
      });
      const keys = new Map<string, Map<string, SqlValue[]>>();
      for (const c of cs.changes) {
        if (!byName.has(c.table)) continue;
        const pk = c.pk.map(fromWire);
        let m = keys.get(c.table);
        if (!m) {
          m = new Map();
          keys.set(c.table, m);
        }
        m.set(JSON.stringify(pk.map(encodeValue)), pk);
      }
      const mutations: Payload["mutations"] = [];
      const tables: TableSchema[] = [];
      for (const [name, m] of keys) {
        const t = byName.get(name)!;
        tables.push(t);
        const list = [...m.values()];
        this.source.rows(t, list).forEach((row, i) => {
          mutations.push(
            row ? { op: "upsert", table: name, row } : { op: "delete", table: name, key: list[i]! },
          );
        });
      }
      const cursor = `${cs.cursor}@${shape}`;
      if (mutations.length > 0) {
        const scope = `${this.replica.nodeId}:${seq}-${cs.cursor}`;
        await this.delivery.deliver(
          makePayload({ mode: "incremental", scope, reset: [], tables, mutations, cursor }),
          stat,
        );
      } else if (cs.cursor !== seq) {
        this.pushCursor.set(cursor);
      }
      seq = cs.cursor;
      if (!cs.hasMore) break;
    }
  }
}

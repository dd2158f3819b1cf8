/**
 * Hub: the protocol's server side over one Replica, with no HTTP in it, so
 * the daemon's routes and the in-memory transport serve the same logic.
 *
 * Contract: `handshake`, `pull` and `push` take the request body as received
 * (unknown) and the caller's Scope, and either answer or throw a HubError
 * carrying the HTTP status to send. Nothing is written unless the whole
 * request is valid: a malformed body, a bucket the hub does not serve or the
 * scope does not allow, a change the replica refuses, or a batch over the
 * limits refuses the request whole. Which bucket a pushed table is in is the
 * replica's answer alone (see Authorizer in replica/incoming.ts): the hub
 * checks the token against it inside the apply's transaction. A table new to
 * the hub joins a bucket only if the hub declares it there (`tables`) or the
 * token is an admin of that bucket; a push never moves a table. A push that
 * changed something emits "changes" with the buckets it touched, which GET
 * /v1/live tells subscribers; every push and pull that carried changes emits
 * "transfer" (direction, count), which the daemon's history counts. A push is applied with its sender as source,
 * and a pull leaves out what the puller sent (by origin and by source), while
 * relaying it to every other.
 */
import { EventEmitter } from "node:events";
import { HubError } from "../errors.js";
import { hubChanges, sqliteBusyRetries } from "../metrics.js";
import type { Authorizer } from "../replica/apply.js";
import type { Replica } from "../replica/replica.js";
import { requireAdmin, type Scope } from "../scope.js";
import { isBusy } from "../store.js";
import {
  type BatchLimits,
  CAPABILITIES,
  checkLimits,
  fitBatch,
  type HandshakeResponse,
  handshakeRequest,
  PROTOCOL_VERSION,
  ProtocolError,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  parse,
  pullRequest,
  pushRequest,
  versionMismatch,
} from "../sync/protocol.js";
import { type ClientAction, Clients } from "./clients.js";
import { pushRefusal } from "./refusals.js";

export interface HubOptions {
  limits?: Partial<BatchLimits>;
  /**
   * Buckets served beyond those of the hub's tables: "*" any (a relay whose
   * tokens are not limited to named buckets), or a list (the buckets a
   * tokens file names). Default: none.
   */
  buckets?: "*" | Iterable<string>;
  /**
   * Table -> bucket: tables a relay accepts into that bucket when they first
   * arrive from any writer of it (`tidewire serve --table orders=b`, a tokens
   * file's `tables`). Any other new table needs an admin token. Their buckets
   * are served.
   */
  tables?: ReadonlyMap<string, string> | Record<string, string>;
}

export class Hub extends EventEmitter<{
  changes: [buckets: string[]];
  transfer: [direction: "push" | "pull", changes: number];
}> {
  readonly limits: BatchLimits;
  /** The replicas heard from since this hub started (GET /v1/status). */
  readonly clients = new Clients();
  private readonly declared: "*" | ReadonlySet<string>;
  /** Declared tables (HubOptions.tables). */
  readonly tables: ReadonlyMap<string, string>;

  constructor(
    readonly replica: Replica,
    options: HubOptions = {},
  ) {
    super();
    this.limits = checkLimits(options.limits);
    const tables = options.tables ?? new Map<string, string>();
    this.tables = new Map(tables instanceof Map ? tables : Object.entries(tables));
    const served = options.buckets === "*" ? "*" : new Set(options.buckets ?? []);
    if (served !== "*") for (const b of this.tables.values()) served.add(b);
    this.declared = served;
  }

  get nodeId(): string {
    return this.replica.nodeId;
  }

  /**
   * The replica's own setting (ReplicaOptions.relay), never a second one:
   * changes for tables it does not track are kept and served by the bucket they carry.
   */
  get relay(): boolean {
    return this.replica.relay;
  }

  handshake(body: unknown, scope: Scope): HandshakeResponse {
    const req = request(() => parse(handshakeRequest, body, "handshake"));
    const answer = {
      hubNodeId: this.nodeId,
      protocolVersion: PROTOCOL_VERSION,
      limits: this.limits,
      capabilities: CAPABILITIES.filter((c) => req.capabilities.includes(c)),
    };
    this.noted(req.nodeId, "handshake", () => {
      if (req.protocolVersion !== PROTOCOL_VERSION) {
        throw new HubError(400, "ERR_PROTOCOL_VERSION", versionMismatch(req.protocolVersion));
      }
      this.checkBuckets(req.buckets, scope, false);
    });
    this.clients.record(req.nodeId, "handshake", req.buckets);
    // Only to a client that asked: an older one's answer schema has no such field.
    if (answer.capabilities.includes("head")) return { accepted: true, ...answer, head: this.replica.head() };
    return { accepted: true, ...answer };
  }

  pull(body: unknown, scope: Scope): PullResponse {
    const req = request(() => parse(pullRequest, body, "pull"));
    const limit = Math.min(req.limit, this.limits.maxRows);
    const set = this.noted(req.nodeId, "pull", () => {
      this.checkBuckets(req.buckets, scope, false);
      return this.replica.changesSince(req.cursor, {
        buckets: req.buckets,
        limit,
        excludeOrigin: req.nodeId,
        excludeSource: req.nodeId,
      });
    });
    const fit = fitBatch(set.changes, this.limits);
    hubChanges.labels("pull").inc(fit.changes.length);
    const answer = fit.cut
      ? { changes: fit.changes, cursor: String(fit.changes.at(-1)!.seq), hasMore: true }
      : set;
    if (fit.changes.length > 0) this.emit("transfer", "pull", fit.changes.length);
    // Where it stands once it applied this page: its lag is counted from there (src/replica/lag.ts).
    // One that fails to apply pulls again from its own cursor, which puts the record back.
    this.clients.record(req.nodeId, "pull", req.buckets, fit.changes.length, answer.cursor);
    return answer;
  }

  push(body: unknown, scope: Scope): PushResponse {
    const req = request(() => parse(pushRequest, body, "push"));
    return this.noted(req.nodeId, "push", () => this.pushParsed(req, scope));
  }

  private pushParsed(req: PushRequest, scope: Scope): PushResponse {
    if (!scope.write) throw new HubError(403, "ERR_READ_ONLY", "this token may only read; push refused");
    if (req.changes.length > this.limits.maxRows) {
      throw new HubError(
        413,
        "ERR_BATCH_TOO_LARGE",
        `a push may carry at most ${this.limits.maxRows} changes, got ${req.changes.length}`,
      );
    }
    // The replica says which bucket each table is in; the token is checked against that answer.
    const tables = new Map<string, string>();
    const authorize: Authorizer = (table, bucket, isNew, i) => {
      if (isNew) this.admit(table, bucket, scope, i);
      else if (!allows(scope, bucket)) {
        throw new HubError(
          403,
          "ERR_FORBIDDEN_BUCKET",
          `changes[${i}]: table ${JSON.stringify(table)} is in bucket ${JSON.stringify(bucket)}, which this token may not write; nothing applied`,
        );
      }
      tables.set(table, bucket);
    };
    let result: { received: number; applied: number };
    try {
      result = this.replica.apply(req.changes, { from: req.nodeId, authorize, refuseUnknownTables: true });
    } catch (err) {
      throw pushRefusal(err, this.replica, req.changes, req.nodeId) ?? err;
    }
    hubChanges.labels("push").inc(req.changes.length);
    if (req.changes.length > 0) this.emit("transfer", "push", req.changes.length);
    const touched = new Set(tables.values());
    this.clients.record(req.nodeId, "push", touched, req.changes.length);
    if (result.applied > 0) this.emit("changes", [...touched]);
    return { cursor: req.cursor, received: result.received, applied: result.applied };
  }

  /**
   * Runs one request's work for `nodeId`, keeping a refusal as the client's
   * last error; not a busy database, which the write gate retries.
   */
  private noted<T>(nodeId: string, action: ClientAction, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err)) this.clients.failed(nodeId, action, (err as Error).message);
      throw err;
    }
  }

  /**
   * Watches the database for writes by other connections (an application, the
   * `sqlite3` shell), ingests what capture staged of them, and emits "changes"
   * with the buckets of the hub's tracked tables when that moved the log, so
   * live subscribers pull those writes at
   * once too. `PRAGMA data_version` moves only for other connections' commits,
   * so the hub's own pushes (which emit already) cost nothing here. Returns
   * the function that stops watching.
   */
  watchLocalWrites(intervalMs = 25, gate?: { readonly locked: boolean; noteBusy(): void }): () => void {
    const replica = this.replica;
    const version = replica.store.db.prepare("PRAGMA data_version").pluck();
    let seen = version.get();
    let mark = replica.loggedHead();
    const timer = setInterval(() => {
      // Another program holds the write lock: the gate says when it is free, so no tick waits for it.
      if (gate?.locked) return;
      try {
        const v = version.get();
        if (v === seen) return;
        // Other programs' writes are staged by capture: the log moves once they are ingested.
        replica.ingest();
        // Only now: an ingest that met the lock must be tried again at the next tick.
        seen = v;
        const m = replica.loggedHead();
        if (m === mark) return;
        mark = m;
        const touched = replica.buckets();
        if (touched.length > 0) this.emit("changes", touched);
      } catch (err) {
        // A busy or closing database: the next tick looks again.
        if (!isBusy(err)) return;
        sqliteBusyRetries.labels("hub.watch").inc();
        gate?.noteBusy();
      }
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * A table the hub has never had may join `bucket` if the hub declares it
   * there, or if an admin of that bucket pushes it first; else a writer of
   * one bucket could squat a table another bucket's clients own.
   */
  private admit(table: string, bucket: string, scope: Scope, i: number): void {
    const at = `changes[${i}]: table ${JSON.stringify(table)}`;
    if (!this.serves(bucket))
      throw new HubError(
        404,
        "ERR_UNKNOWN_BUCKET",
        `${at}: the hub serves no bucket ${JSON.stringify(bucket)}; nothing applied`,
      );
    if (!allows(scope, bucket))
      throw new HubError(
        403,
        "ERR_FORBIDDEN_BUCKET",
        `${at}: this token may not write bucket ${JSON.stringify(bucket)}; nothing applied`,
      );
    const declared = this.tables.get(table);
    if (declared === bucket) return;
    if (declared !== undefined) {
      throw new HubError(
        422,
        "ERR_TABLE_BUCKET",
        `${at} is declared in bucket ${JSON.stringify(declared)} on this hub, not ${JSON.stringify(bucket)}; nothing applied`,
      );
    }
    requireAdmin(
      scope,
      `${at} is new to this hub, and adding it to bucket ${JSON.stringify(bucket)} without a declaration (tidewire serve --table ${table}=${bucket})`,
    );
  }

  /** Whether this hub serves `bucket`: one of its tables' (tracked or relayed), or declared. */
  serves(bucket: string, tables = this.tablesByName()): boolean {
    if (this.declared === "*" || this.declared.has(bucket)) return true;
    for (const b of tables.values()) if (b === bucket) return true;
    return false;
  }

  /** Tracked and relayed tables alike, as the replica knows them. */
  private tablesByName(): Map<string, string> {
    const all = [...this.replica.tables(), ...this.replica.relayedTables()];
    return new Map(all.map((t) => [t.table, t.bucket]));
  }

  /** Throws a 404 for a bucket the hub does not serve, a 403 for one the scope may not use. */
  checkBuckets(buckets: string[], scope: Scope, write: boolean): void {
    const tables = this.tablesByName();
    for (const b of buckets) {
      if (!this.serves(b, tables))
        throw new HubError(404, "ERR_UNKNOWN_BUCKET", `the hub serves no bucket ${JSON.stringify(b)}`);
      if (!allows(scope, b) || (write && !scope.write)) {
        throw new HubError(
          403,
          "ERR_FORBIDDEN_BUCKET",
          `this token may not ${write ? "write" : "read"} bucket ${JSON.stringify(b)}`,
        );
      }
    }
  }
}

function allows(scope: Scope, bucket: string): boolean {
  return scope.buckets === "*" || scope.buckets.has(bucket);
}

/** A malformed request is the client's fault: 400. */
function request<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ProtocolError) throw new HubError(400, err.code, err.message);
    throw err;
  }
}

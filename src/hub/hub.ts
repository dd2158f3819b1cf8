/**
 * Hub: the protocol's server side over one Replica, with no HTTP in it, so
 * the daemon's routes and the in-memory transport serve the same logic.
 *
 * Contract: `handshake`, `pull` and `push` take the request body as received
 * (unknown) and the caller's Scope, and either answer or throw a HubError
 * carrying the HTTP status to send. Nothing is written unless the whole
 * request is valid: a malformed body, a bucket the hub does not serve or the
 * scope does not allow, a change for a table the hub does not know, or a
 * batch over the limits is refused before `apply`, and `apply` itself
 * refuses a bad batch whole. A push that changed something emits "changes"
 * with the buckets it touched, which GET /v1/live tells subscribers. A push
 * is applied with its sender as source, and a pull leaves out what the
 * puller sent (by origin and by source), while relaying it to every other.
 */
import { EventEmitter } from "node:events";
import { TidewireError } from "../errors.js";
import { hubChanges } from "../metrics.js";
import type { Replica } from "../replica/replica.js";
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
  type PushResponse,
  parse,
  pullRequest,
  pushRequest,
  versionMismatch,
} from "../sync/protocol.js";
import { Clients } from "./clients.js";

/** What one credential may do: read these buckets ("*": all), and write them if `write`. */
export interface Scope {
  /** Names the credential in logs and rate limits, never the secret itself. */
  id: string;
  buckets: "*" | ReadonlySet<string>;
  write: boolean;
}

export const FULL_SCOPE: Scope = { id: "insecure", buckets: "*", write: true };

/** A request the hub refuses; `status` is the HTTP status that says why. */
export class HubError extends TidewireError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(message, code);
    this.name = "HubError";
  }
}

export interface HubOptions {
  limits?: Partial<BatchLimits>;
  /**
   * The replica was opened with `relay: true`: changes for tables it does
   * not track are kept and served by the bucket they carry.
   */
  relay?: boolean;
  /**
   * Buckets served beyond those of the hub's tables: "*" any (a relay whose
   * tokens are not limited to named buckets), or a list (the buckets a
   * tokens file names). Default: none.
   */
  buckets?: "*" | Iterable<string>;
}

export class Hub extends EventEmitter<{ changes: [buckets: string[]] }> {
  readonly limits: BatchLimits;
  readonly relay: boolean;
  /** The replicas heard from since this hub started (GET /v1/status). */
  readonly clients = new Clients();
  private readonly declared: "*" | ReadonlySet<string>;
  private readonly tablesSql;

  constructor(
    readonly replica: Replica,
    options: HubOptions = {},
  ) {
    super();
    this.limits = checkLimits(options.limits);
    this.relay = options.relay === true;
    this.declared = options.buckets === "*" ? "*" : new Set(options.buckets ?? []);
    // Tracked and relayed tables alike; Replica.tables() lists only the tracked ones.
    this.tablesSql = replica.store.db.prepare("SELECT name, bucket FROM tw_tracked");
  }

  get nodeId(): string {
    return this.replica.nodeId;
  }

  handshake(body: unknown, scope: Scope): HandshakeResponse {
    const req = request(() => parse(handshakeRequest, body, "handshake"));
    const answer = {
      hubNodeId: this.nodeId,
      protocolVersion: PROTOCOL_VERSION,
      limits: this.limits,
      capabilities: CAPABILITIES.filter((c) => req.capabilities.includes(c)),
    };
    if (req.protocolVersion !== PROTOCOL_VERSION) {
      throw new HubError(400, "ERR_PROTOCOL_VERSION", versionMismatch(req.protocolVersion));
    }
    this.checkBuckets(req.buckets, scope, false);
    this.clients.record(req.nodeId, "handshake", req.buckets);
    // Only to a client that asked: an older one's answer schema has no such field.
    if (answer.capabilities.includes("head")) return { accepted: true, ...answer, head: this.replica.head() };
    return { accepted: true, ...answer };
  }

  pull(body: unknown, scope: Scope): PullResponse {
    const req = request(() => parse(pullRequest, body, "pull"));
    this.checkBuckets(req.buckets, scope, false);
    const limit = Math.min(req.limit, this.limits.maxRows);
    const set = this.replica.changesSince(req.cursor, {
      buckets: req.buckets,
      limit,
      excludeOrigin: req.nodeId,
      excludeSource: req.nodeId,
    });
    const fit = fitBatch(set.changes, this.limits);
    hubChanges.labels("pull").inc(fit.changes.length);
    this.clients.record(req.nodeId, "pull", req.buckets, fit.changes.length);
    if (!fit.cut) return set;
    return { changes: fit.changes, cursor: String(fit.changes.at(-1)!.seq), hasMore: true };
  }

  push(body: unknown, scope: Scope): PushResponse {
    const req = request(() => parse(pushRequest, body, "push"));
    if (!scope.write) throw new HubError(403, "ERR_READ_ONLY", "this token may only read; push refused");
    if (req.changes.length > this.limits.maxRows) {
      throw new HubError(
        413,
        "ERR_BATCH_TOO_LARGE",
        `a push may carry at most ${this.limits.maxRows} changes, got ${req.changes.length}`,
      );
    }
    const tables = this.tablesByName();
    const touched = new Set<string>();
    req.changes.forEach((c, i) => {
      const bucket = tables.get(c.table) ?? (this.relay ? c.bucket : undefined);
      if (bucket === undefined) {
        throw new HubError(
          422,
          "ERR_UNKNOWN_TABLE",
          this.relay
            ? `changes[${i}]: table ${JSON.stringify(c.table)} is unknown to the hub and the change carries no bucket; nothing applied`
            : `changes[${i}]: the hub does not serve table ${JSON.stringify(c.table)}; nothing applied`,
        );
      }
      if (!this.serves(bucket, tables)) {
        throw new HubError(
          404,
          "ERR_UNKNOWN_BUCKET",
          `changes[${i}]: the hub serves no bucket ${JSON.stringify(bucket)}; nothing applied`,
        );
      }
      if (!allows(scope, bucket)) {
        throw new HubError(
          403,
          "ERR_FORBIDDEN_BUCKET",
          `changes[${i}]: this token may not write bucket ${JSON.stringify(bucket)}; nothing applied`,
        );
      }
      touched.add(bucket);
    });
    let result: { received: number; applied: number };
    try {
      result = this.replica.apply(req.changes, { from: req.nodeId });
    } catch (err) {
      // The Replica refused the batch whole (InvalidChangeError, ClockDriftError): the sender's fault.
      if (err instanceof TidewireError && REFUSED_BATCH.has(err.code))
        throw new HubError(422, err.code, err.message);
      throw err;
    }
    hubChanges.labels("push").inc(req.changes.length);
    this.clients.record(req.nodeId, "push", touched, req.changes.length);
    if (result.applied > 0) this.emit("changes", [...touched]);
    return { cursor: req.cursor, received: result.received, applied: result.applied };
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
    const db = this.replica.store.db;
    const version = db.prepare("PRAGMA data_version").pluck();
    const logMark = db.prepare("SELECT seq FROM tw_clock WHERE id = 0").pluck();
    const buckets = db.prepare("SELECT DISTINCT bucket FROM tw_tracked WHERE relayed = 0").pluck();
    let seen = version.get();
    let mark = logMark.get();
    const timer = setInterval(() => {
      // Another program holds the write lock: the gate says when it is free, so no tick waits for it.
      if (gate?.locked) return;
      try {
        const v = version.get();
        if (v === seen) return;
        // Other programs' writes are staged by capture: the log moves once they are ingested.
        this.replica.ingest();
        // Only now: an ingest that met the lock must be tried again at the next tick.
        seen = v;
        const m = logMark.get();
        if (m === mark) return;
        mark = m;
        const touched = buckets.all() as string[];
        if (touched.length > 0) this.emit("changes", touched);
      } catch (err) {
        // A busy or closing database: the next tick looks again.
        if (isBusy(err)) gate?.noteBusy();
      }
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Whether this hub serves `bucket`: one of its tables' (tracked or relayed), or declared. */
  serves(bucket: string, tables = this.tablesByName()): boolean {
    if (this.declared === "*" || this.declared.has(bucket)) return true;
    for (const b of tables.values()) if (b === bucket) return true;
    return false;
  }

  private tablesByName(): Map<string, string> {
    const rows = this.tablesSql.all() as Array<{ name: string; bucket: string }>;
    return new Map(rows.map((t) => [t.name, t.bucket]));
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

const REFUSED_BATCH = new Set(["ERR_INVALID_CHANGE", "ERR_CLOCK_DRIFT"]);

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

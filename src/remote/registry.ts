/**
 * Remotes: the registry of remote targets a database's daemon keeps in sync,
 * in `tw_remotes` (migration 13), and the RemoteStatus each is shown as.
 *
 * Contract: a target is registered once, by its URL without secrets (the
 * adapter's `id`, called `target` here); its `url` keeps the secrets (a
 * PostgreSQL password, a libSQL authToken) in clear in the database file,
 * like a peer's token, and nothing this module returns for display (status,
 * `publicRemote`) contains it. Relative file paths are resolved when added,
 * so the daemon, which runs elsewhere, reaches the same file. Every entry
 * point checks all of its input before it writes and refuses bad input with
 * an InvalidArgumentError, changing nothing. `remove` also deletes the
 * target's cursors and bounces its spooled payloads, so a target added again
 * starts with a full push.
 */
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import { trackedTableNames } from "../replica/report.js";
import type { Store } from "../store.js";
import { checkBoolean, checkInteger, checkObject } from "../validate.js";
import { openTarget } from "./open-target.js";
import { checkDirection, DIRECTIONS, type SyncDirection } from "./push-options.js";
import { checkD1, checkNames, checkRemoteId, deriveId, normalizeUrl } from "./remote-input.js";
import { PayloadSpool } from "./spool.js";
import type { Backend } from "./target.js";
import type { D1Options } from "./targets/d1.js";

export { checkRemoteId, deriveId } from "./remote-input.js";

/** A registered target's direction: RemoteSync's own (push-options.ts). */
export type Direction = SyncDirection;
export { DIRECTIONS };
export const DEFAULT_INTERVAL_MS = 60_000;
/** The outbox RemoteSync spools payloads in by default (push-options.ts), where `pending` counts them. */
const OUTBOX = "remote";
const MAX_ERROR = 1000;

export interface Remote {
  id: string;
  /** The URL as given, secrets included: only for opening the target. */
  url: string;
  /** The URL without secrets: what is shown, and the key of the target's cursors and spool. */
  target: string;
  backend: Backend;
  direction: Direction;
  intervalMs: number;
  /** Only these tracked tables (null: every one, or those of `buckets`). */
  tables: string[] | null;
  /** Only the tables of these buckets (null: every bucket). */
  buckets: string[] | null;
  d1: D1Options | null;
  paused: boolean;
  createdAt: number;
  lastAttemptAt: number | null;
  lastPushAt: number | null;
  lastPullAt: number | null;
  lastSuccessAt: number | null;
  lastError: string | null;
  lastErrorAt: number | null;
}

/** A remote as `status`, GET /v1/status and the CLI show it (times are ms since epoch). */
export interface RemoteStatus {
  id: string;
  target: string;
  backend: Backend;
  direction: Direction;
  intervalMs: number;
  tables: string[] | null;
  paused: boolean;
  lastPushAt: number | null;
  lastPullAt: number | null;
  lastSuccessAt: number | null;
  lastError: string | null;
  lastErrorAt: number | null;
  /** Payloads spooled for the target and not yet accepted by it. */
  pending: number;
}

export interface RemoteInput {
  /** sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME. */
  url: string;
  /** A stable short name, 1 to 64 of A-Z a-z 0-9 . _ : - (default: derived from the URL). */
  id?: string;
  direction?: Direction;
  intervalMs?: number;
  tables?: string[];
  buckets?: string[];
  /** For d1:NAME: wrangler's --local/--remote and --config, which a registered D1 target needs. */
  d1?: D1Options;
}

export class Remotes {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(private readonly store: Store) {
    this.sql = prepare(store);
  }

  /** A file's targets as `status` shows them (see `status()`); none for a file from before migration 13. */
  static statusOf(store: Store): RemoteStatus[] {
    return store.hasTable("tw_remotes") ? new Remotes(store).status() : [];
  }

  /** Registers a target; refuses a target (or an id) already registered. Returns it as stored. */
  add(input: RemoteInput): Remote {
    checkObject("remote", input);
    const d1 = checkD1(input.url, input.d1);
    const url = normalizeUrl(input.url);
    const target = openTarget(url, { d1: d1 ?? undefined });
    // The adapters keep a password in the user info or an authToken out of `id`; one in the query would show.
    if (/[?&](password|sslpassword|authToken)=/i.test(target.id))
      throw new InvalidArgumentError("url", "must carry its password in the URL's user part, not the query");
    const id = input.id === undefined ? deriveId(target.backend, target.id) : checkRemoteId(input.id);
    const direction = checkDirection(input.direction ?? "both");
    const intervalMs = checkInteger("intervalMs", input.intervalMs ?? DEFAULT_INTERVAL_MS, 1);
    const tables = input.tables === undefined ? null : this.checkTables(input.tables);
    const buckets = input.buckets === undefined ? null : checkNames("buckets", input.buckets);
    return this.store.write(() => {
      const same = this.sql.byTarget.get(target.id) as { id: string } | undefined;
      if (same) throw new InvalidArgumentError("url", `${target.id} is already registered as ${same.id}`);
      const taken = this.row(id);
      if (taken) {
        throw new InvalidArgumentError(
          "id",
          `${id} is already the id of ${taken.target}; choose another${input.id === undefined ? " with --id" : ""}`,
        );
      }
      this.sql.insert.run({
        id,
        url,
        target: target.id,
        backend: target.backend,
        direction,
        intervalMs,
        tables: tables && JSON.stringify(tables),
        buckets: buckets && JSON.stringify(buckets),
        d1: d1 && JSON.stringify(d1),
        now: Date.now(),
      });
      return toRemote(this.row(id)!);
    });
  }

  get(id: string): Remote | undefined {
    const row = this.row(checkRemoteId(id));
    return row ? toRemote(row) : undefined;
  }

  list(): Remote[] {
    return (this.sql.list.all() as RemoteRow[]).map(toRemote);
  }

  /**
   * Forgets the target, deletes its cursors (through `cursors`, so its cache
   * forgets them too, or a CursorStore of its own) and bounces its spooled
   * payloads. False when there is no such target.
   */
  remove(id: string, cursors?: CursorStore): boolean {
    const key = checkRemoteId(id);
    if (cursors !== undefined && !(cursors instanceof CursorStore))
      throw new InvalidArgumentError("cursors", "must be a CursorStore");
    const row = this.row(key);
    if (!row) return false;
    // Row first: once it is gone no new job starts, and what follows can be redone by hand.
    this.store.write(() => this.sql.remove.run(key), "remotes");
    this.forget(row.target, cursors);
    return true;
  }

  /**
   * Deletes a target's cursors and bounces its spooled payloads: after
   * `remove`, and after a cycle that was running while its target was
   * removed (it wrote its cursor again).
   */
  forget(target: string, cursors?: CursorStore): void {
    (cursors ?? new CursorStore(this.store, { flushIntervalMs: 0 })).deletePeer(target);
    const spool = new PayloadSpool(this.store, OUTBOX, target);
    for (const p of spool.pending()) spool.abandon(p, `remote ${target} was removed`);
  }

  /** Pauses or resumes the target's jobs; false when there is no such target. */
  setPaused(id: string, paused: boolean): boolean {
    const key = checkRemoteId(id);
    checkBoolean("paused", paused);
    return this.store.write(() => this.sql.paused.run(paused ? 1 : 0, key).changes > 0, "remotes");
  }

  /** A cycle started (due-ness is counted from here). */
  noteAttempt(id: string, at = Date.now()): void {
    const key = checkRemoteId(id);
    const when = checkInteger("at", at, 0);
    this.store.write(() => this.sql.attempt.run(when, key), "remotes");
  }

  /** A cycle succeeded, having pushed and/or pulled. */
  noteSuccess(id: string, did: { push: boolean; pull: boolean }, at = Date.now()): void {
    const key = checkRemoteId(id);
    checkBoolean("did.push", checkObject("did", did).push);
    checkBoolean("did.pull", did.pull);
    const when = checkInteger("at", at, 0);
    this.store.write(() =>
      this.sql.success.run({ id: key, at: when, push: did.push ? 1 : 0, pull: did.pull ? 1 : 0 }),
    );
  }

  /** A cycle failed with `error` (kept, cut to 1,000 characters, until the next error). */
  noteError(id: string, error: string, at = Date.now()): void {
    const key = checkRemoteId(id);
    if (typeof error !== "string" || error.trim() === "")
      throw new InvalidArgumentError("error", "must be a non-empty string");
    const when = checkInteger("at", at, 0);
    this.store.write(() => this.sql.error.run(error.slice(0, MAX_ERROR), when, key), "remotes");
  }

  /** Every target as shown outside the daemon, with its spooled payloads counted. */
  status(): RemoteStatus[] {
    return this.list().map((r) =>
      publicRemote(r, new PayloadSpool(this.store, OUTBOX, r.target).pending().length),
    );
  }

  private row(id: string): RemoteRow | undefined {
    return this.sql.get.get(id) as RemoteRow | undefined;
  }

  /** Names, each a tracked table of this file (when it tracks any): a typo is refused now, not at every cycle. */
  private checkTables(tables: unknown): string[] {
    const names = checkNames("tables", tables);
    const known = trackedTableNames(this.store);
    if (known === null) return names;
    const tracked = new Set(known);
    const unknown = names.filter((t) => !tracked.has(t));
    if (unknown.length > 0)
      throw new InvalidArgumentError(
        "tables",
        `${unknown.map((t) => JSON.stringify(t)).join(", ")} ${unknown.length === 1 ? "is" : "are"} not tracked in ${this.store.path}`,
      );
    return names;
  }
}

/** The target without its secrets, and the count of its spooled payloads. */
export function publicRemote(r: Remote, pending: number): RemoteStatus {
  return {
    id: r.id,
    target: r.target,
    backend: r.backend,
    direction: r.direction,
    intervalMs: r.intervalMs,
    tables: r.tables,
    paused: r.paused,
    lastPushAt: r.lastPushAt,
    lastPullAt: r.lastPullAt,
    lastSuccessAt: r.lastSuccessAt,
    lastError: r.lastError,
    lastErrorAt: r.lastErrorAt,
    pending,
  };
}

interface RemoteRow {
  id: string;
  url: string;
  target: string;
  backend: Backend;
  direction: Direction;
  interval_ms: number;
  tables: string | null;
  buckets: string | null;
  d1: string | null;
  paused: number;
  created_at: number;
  last_attempt_at: number | null;
  last_push_at: number | null;
  last_pull_at: number | null;
  last_success_at: number | null;
  last_error: string | null;
  last_error_at: number | null;
}

function toRemote(r: RemoteRow): Remote {
  return {
    id: r.id,
    url: r.url,
    target: r.target,
    backend: r.backend,
    direction: r.direction,
    intervalMs: r.interval_ms,
    tables: r.tables === null ? null : (JSON.parse(r.tables) as string[]),
    buckets: r.buckets === null ? null : (JSON.parse(r.buckets) as string[]),
    d1: r.d1 === null ? null : (JSON.parse(r.d1) as D1Options),
    paused: r.paused !== 0,
    createdAt: r.created_at,
    lastAttemptAt: r.last_attempt_at,
    lastPushAt: r.last_push_at,
    lastPullAt: r.last_pull_at,
    lastSuccessAt: r.last_success_at,
    lastError: r.last_error,
    lastErrorAt: r.last_error_at,
  };
}

function prepare(store: Store) {
  const db = store.db;
  return {
    get: db.prepare("SELECT * FROM tw_remotes WHERE id = ?"),
    byTarget: db.prepare("SELECT id FROM tw_remotes WHERE target = ?"),
    list: db.prepare("SELECT * FROM tw_remotes ORDER BY id"),
    insert: db.prepare(
      `INSERT INTO tw_remotes (id, url, target, backend, direction, interval_ms, tables, buckets, d1, created_at)
       VALUES (@id, @url, @target, @backend, @direction, @intervalMs, @tables, @buckets, @d1, @now)`,
    ),
    remove: db.prepare("DELETE FROM tw_remotes WHERE id = ?"),
    paused: db.prepare("UPDATE tw_remotes SET paused = ? WHERE id = ?"),
    attempt: db.prepare("UPDATE tw_remotes SET last_attempt_at = ? WHERE id = ?"),
    success: db.prepare(
      `UPDATE tw_remotes SET last_success_at = @at,
         last_push_at = CASE WHEN @push THEN @at ELSE last_push_at END,
         last_pull_at = CASE WHEN @pull THEN @at ELSE last_pull_at END
       WHERE id = @id`,
    ),
    error: db.prepare("UPDATE tw_remotes SET last_error = ?, last_error_at = ? WHERE id = ?"),
  };
}

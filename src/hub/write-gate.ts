/**
 * WriteGate: how the daemon's event loop lives beside another program's
 * write lock on its file (a `sqlite3` shell in `BEGIN IMMEDIATE`, a backup,
 * an application's long transaction).
 *
 * Contract: the daemon's connection waits for a lock only briefly (its busy
 * timeout is tens of ms, see `Store.setBusyWait`), so a call that meets a
 * held lock throws SQLITE_BUSY soon instead of freezing every endpoint.
 * `run` turns that into waiting off the loop: it retries the call on a timer
 * until `waitMs` has passed, then throws a 503 `ERR_DATABASE_BUSY` carrying
 * `retryAfterSeconds`. Once a busy error was seen the gate is `locked`: one
 * probe (BEGIN IMMEDIATE with no wait, then ROLLBACK) runs every `probeMs`
 * until it gets the lock, and waiting callers go at once when it does,
 * instead of each spinning on the lock. `state` tells /readyz whether the
 * file can be written now, and since when it could not. It lives in hub/
 * because the hub's routes answer through it (routes.ts makes one when the
 * daemon passes none); the daemon, above the hub, only configures it.
 */
import { EventEmitter } from "node:events";
import type Database from "better-sqlite3";
import { type BusyOperation, sqliteBusyRetries } from "../metrics.js";
import { isBusy, type Store } from "../store.js";
import { RetryLaterError } from "./limits.js";

export interface WriteGateOptions {
  /** How long a request waits for the lock before its 503, ms (default 2,000). */
  waitMs?: number;
  /** How often a held lock is probed, ms (default 50). */
  probeMs?: number;
}

export const DEFAULT_LOCK_WAIT_MS = 2_000;
/** The daemon connection's own busy timeout: short, since it blocks the event loop. */
export const DAEMON_BUSY_TIMEOUT_MS = 20;

/** A request refused because another program held the database's write lock for longer than it may wait. */
export class DatabaseBusyError extends RetryLaterError {
  constructor(retryAfterSeconds: number, waitedMs: number) {
    super(
      503,
      "ERR_DATABASE_BUSY",
      `another program holds the hub's database write lock${waitedMs > 0 ? ` (waited ${waitedMs} ms)` : ""}; nothing was applied, retry after ${retryAfterSeconds} s`,
      retryAfterSeconds,
    );
    this.name = "DatabaseBusyError";
  }
}

export interface GateState {
  /** The file could be written at the last look. */
  writable: boolean;
  /** Epoch ms since which the lock has been held by someone else, or null. */
  lockedSince: number | null;
  /** Why it cannot be written, when not for a lock (read-only file, I/O error). */
  error: string | null;
}

/** "locked" when a call first meets another program's lock, "released" with how long it was held. */
export class WriteGate extends EventEmitter<{ locked: []; released: [heldMs: number] }> {
  readonly waitMs: number;
  private readonly probeMs: number;
  private lockedSince: number | null = null;
  private error: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private waiters = new Set<() => void>();
  private readonly begin: Database.Statement;
  private readonly rollback: Database.Statement;

  constructor(
    private readonly store: Store,
    options: WriteGateOptions = {},
  ) {
    super();
    this.waitMs = options.waitMs ?? DEFAULT_LOCK_WAIT_MS;
    this.probeMs = options.probeMs ?? 50;
    this.begin = store.db.prepare("BEGIN IMMEDIATE");
    this.rollback = store.db.prepare("ROLLBACK");
  }

  get locked(): boolean {
    return this.lockedSince !== null;
  }

  /** Records that a call met the lock: from now on one probe watches for its release. */
  noteBusy(): void {
    if (this.lockedSince !== null) return;
    this.lockedSince = Date.now();
    this.timer = setInterval(() => this.probe(), this.probeMs);
    this.timer.unref();
    this.emit("locked");
  }

  /**
   * Runs `fn` (synchronous SQLite work, all or nothing) once the lock is
   * free, retrying it while it meets the lock, for `waitMs` at most; each
   * retry counts in /metrics under `op`.
   */
  async run<T>(fn: () => T, waitMs = this.waitMs, op: BusyOperation = "write"): Promise<T> {
    const deadline = Date.now() + waitMs;
    for (let again = false; ; again = true) {
      if (this.locked && !(await this.free(deadline))) {
        throw new DatabaseBusyError(1, waitMs);
      }
      if (again) sqliteBusyRetries.labels(op).inc();
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err)) throw err;
        this.noteBusy();
      }
    }
  }

  /** Looks now (without waiting for the lock) whether the file can be written. */
  state(): GateState {
    this.probe();
    return {
      writable: this.lockedSince === null && this.error === null,
      lockedSince: this.lockedSince,
      error: this.error,
    };
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** Resolves true when the lock is free, false when `deadline` comes first. */
  private free(deadline: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timeout);
        this.waiters.delete(wake);
        resolve(ok);
      };
      const wake = () => done(!this.locked);
      const timeout = setTimeout(() => done(false), Math.max(0, deadline - Date.now()));
      this.waiters.add(wake);
    });
  }

  /** One look at the lock, with no busy wait: the loop never blocks on it. */
  private probe(): void {
    if (!this.store.isOpen) {
      this.close();
      return;
    }
    if (this.store.db.inTransaction) return;
    const timeout = this.store.db.pragma("busy_timeout", { simple: true }) as number;
    this.store.db.pragma("busy_timeout = 0");
    try {
      this.begin.run();
      this.rollback.run();
      this.error = null;
      this.release();
    } catch (err) {
      if (isBusy(err)) this.noteBusy();
      else this.error = (err as Error).message;
    } finally {
      this.store.db.pragma(`busy_timeout = ${timeout}`);
    }
  }

  private release(): void {
    if (this.lockedSince === null) return;
    const heldMs = Date.now() - this.lockedSince;
    this.lockedSince = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of [...this.waiters]) w();
    this.emit("released", heldMs);
  }
}

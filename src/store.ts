/**
 * Store: one SQLite file opened with tidewire's pragmas and migrations.
 *
 * Contract: `openStore` creates the parent folder, refuses (and leaves alone) a
 * file that is not a SQLite database, and an existing empty file unless
 * `allowEmptyFile` (a database truncated to 0 bytes must not silently come back
 * as a new, empty one), applies the pragmas, and brings the
 * schema to the latest version recorded in `PRAGMA user_version`. Writes go
 * through `store.write`, an IMMEDIATE transaction that is retried with
 * exponential backoff when SQLITE_BUSY/SQLITE_LOCKED escapes the busy timeout.
 * `close` checkpoints the WAL so the file is whole on its own.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { exponentialDelay } from "./backoff.js";
import { InvalidArgumentError, StoreError } from "./errors.js";
import { type BusyOperation, sqliteBusyRetries } from "./metrics.js";
import { migrate } from "./migrations.js";
import { checkBoolean, checkInteger, checkNumber } from "./validate.js";

export type JournalMode = "WAL" | "DELETE" | "TRUNCATE" | "PERSIST" | "MEMORY" | "OFF";
export type Synchronous = "OFF" | "NORMAL" | "FULL" | "EXTRA";
export type AutoVacuum = "NONE" | "FULL" | "INCREMENTAL";

export interface RetryOptions {
  /** Attempts after the first failure. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export interface StoreOptions {
  journalMode?: JournalMode;
  busyTimeoutMs?: number;
  /** Page cache in KiB (SQLite's negative cache_size). */
  cacheSizeKiB?: number;
  synchronous?: Synchronous;
  /** Only takes effect on a new, empty database. */
  autoVacuum?: AutoVacuum;
  foreignKeys?: boolean;
  readonly?: boolean;
  retry?: Partial<RetryOptions>;
  /**
   * Make an existing 0-byte file a new database (default false: refused, as a file
   * truncated to nothing would otherwise come back as an empty database). A missing
   * file is always created.
   */
  allowEmptyFile?: boolean;
}

const DEFAULTS = {
  journalMode: "WAL",
  busyTimeoutMs: 30_000,
  cacheSizeKiB: 64 * 1024,
  synchronous: "NORMAL",
  autoVacuum: "INCREMENTAL",
  foreignKeys: true,
  readonly: false,
  allowEmptyFile: false,
} as const;

export const DEFAULT_RETRY: RetryOptions = { attempts: 5, baseMs: 10, maxMs: 500 };

const JOURNAL_MODES = new Set(["WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"]);
const SYNCHRONOUS = new Set(["OFF", "NORMAL", "FULL", "EXTRA"]);
const AUTO_VACUUM = new Set(["NONE", "FULL", "INCREMENTAL"]);

export class Store {
  readonly db: Database.Database;
  readonly path: string;
  readonly readonly: boolean;
  retry: RetryOptions;
  /** Busy errors retried by this store since it opened. */
  busyRetries = 0;
  private closed = false;
  private readonly closeHooks: Array<() => void> = [];

  constructor(path: string, options: StoreOptions = {}) {
    // An option given as undefined means "not given", as it does everywhere else.
    const opts = { ...DEFAULTS, ...definedOnly(options) };
    validateOptions(opts);
    this.retry = { ...DEFAULT_RETRY, ...definedOnly(options.retry) };
    validateRetry(this.retry);
    this.path = path === ":memory:" ? path : resolve(path);
    this.readonly = opts.readonly;
    if (this.path !== ":memory:") {
      checkIsSqliteFile(this.path, opts.allowEmptyFile);
      if (!opts.readonly) mkdirSync(dirname(this.path), { recursive: true });
    }
    try {
      this.db = new Database(this.path, { readonly: opts.readonly, fileMustExist: opts.readonly });
    } catch (err) {
      throw new StoreError(`cannot open ${this.path}: ${(err as Error).message}`);
    }
    try {
      this.db.pragma(`busy_timeout = ${opts.busyTimeoutMs}`);
      this.db.pragma(`cache_size = ${-opts.cacheSizeKiB}`);
      this.db.pragma(`foreign_keys = ${opts.foreignKeys ? "ON" : "OFF"}`);
      if (!opts.readonly) {
        // auto_vacuum only sticks before the first table exists.
        if (this.db.pragma("page_count", { simple: true }) === 0) {
          this.db.pragma(`auto_vacuum = ${opts.autoVacuum}`);
        }
        this.retrying(() => this.db.pragma(`journal_mode = ${opts.journalMode}`), "open");
        this.db.pragma(`synchronous = ${opts.synchronous}`);
        this.retrying(() => migrate(this.db), "open");
      }
    } catch (err) {
      this.db.close();
      if ((err as { code?: string }).code === "SQLITE_NOTADB") {
        throw new StoreError(`${this.path} is not a SQLite database`, "ERR_NOT_A_DATABASE");
      }
      throw err;
    }
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction (the write lock is taken up front, so
   * a reader never has to upgrade and deadlock), retrying busy errors. `fn` must
   * be synchronous: better-sqlite3 transactions cannot span an await. `op`
   * labels its busy retries in /metrics.
   */
  write<T>(fn: () => T, op: BusyOperation = "write"): T {
    const tx = this.db.transaction(fn);
    return this.retrying(() => tx.immediate(), op);
  }

  /**
   * `write` for a hot path: wraps `fn` once and returns a function that runs it
   * in an IMMEDIATE transaction with busy retry, sparing the per-call wrapping.
   */
  writer<A extends unknown[], R>(fn: (...args: A) => R, op: BusyOperation = "write"): (...args: A) => R {
    const tx = this.db.transaction(fn);
    return (...args: A) => this.retrying(() => tx.immediate(...args), op);
  }

  /** Runs `fn`, retrying SQLITE_BUSY/SQLITE_LOCKED with capped exponential backoff, counted under `op`. */
  retrying<T>(fn: () => T, op: BusyOperation = "write"): T {
    for (let attempt = 0; ; attempt++) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || attempt >= this.retry.attempts) throw err;
        this.busyRetries++;
        sqliteBusyRetries.labels(op).inc();
        sleepSync(exponentialDelay(attempt, this.retry));
      }
    }
  }

  /**
   * Changes how long a call waits for another connection's lock: SQLite's busy
   * timeout, then `retry`. The daemon opens with the defaults (start-up may
   * wait) and then shortens both, because on its event loop every ms a call
   * waits is a ms no request is answered (see src/hub/write-gate.ts).
   */
  setBusyWait(busyTimeoutMs: number, retry: Partial<RetryOptions> = {}): void {
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0)
      throw new InvalidArgumentError("busyTimeoutMs", "must be a non-negative integer");
    const next = { ...this.retry, ...definedOnly(retry) };
    validateRetry(next);
    this.db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    this.retry = next;
  }

  /**
   * Copies the WAL's content into the database file. PASSIVE (the default) never
   * waits: it copies what no reader still needs, so a periodic checkpoint cannot
   * stall the event loop. TRUNCATE also empties the WAL file, waiting for readers
   * at most `waitMs` (not the 30 s busy timeout) before it gives up for this time.
   */
  checkpoint(
    mode: "PASSIVE" | "TRUNCATE" = "PASSIVE",
    waitMs = 1_000,
  ): { busy: boolean; walFrames: number; checkpointed: number } {
    if (this.readonly) return { busy: false, walFrames: 0, checkpointed: 0 };
    const timeout = this.db.pragma("busy_timeout", { simple: true }) as number;
    if (mode === "TRUNCATE") this.db.pragma(`busy_timeout = ${Math.min(timeout, waitMs)}`);
    try {
      const [r] = this.retrying(() => this.db.pragma(`wal_checkpoint(${mode})`), "checkpoint") as Array<{
        busy: number;
        log: number;
        checkpointed: number;
      }>;
      return { busy: r?.busy === 1, walFrames: r?.log ?? 0, checkpointed: r?.checkpointed ?? 0 };
    } finally {
      if (mode === "TRUNCATE") this.db.pragma(`busy_timeout = ${timeout}`);
    }
  }

  /** Called on close, before the checkpoint; components flush their state here. */
  onClose(hook: () => void): void {
    this.closeHooks.push(hook);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Whether the database has a table of this name (tidewire's own or the application's). */
  hasTable(name: string): boolean {
    return (
      this.db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name) !== undefined
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const hook of this.closeHooks.splice(0)) hook();
    try {
      if (this.db.pragma("journal_mode", { simple: true }) === "wal") this.checkpoint("TRUNCATE");
    } finally {
      this.db.close();
    }
  }
}

export function openStore(path: string, options?: StoreOptions): Store {
  if (typeof path !== "string" || path.length === 0) {
    throw new InvalidArgumentError("path", "must be a non-empty string");
  }
  return new Store(path, options);
}

export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread; only used between retries of a synchronous SQLite call. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** How long an empty file may take to become a database another process is creating. */
const EMPTY_FILE_GRACE_MS = 500;

function checkIsSqliteFile(path: string, allowEmpty: boolean): void {
  if (!existsSync(path)) return;
  const st = statSync(path);
  if (!st.isFile()) throw new StoreError(`${path} is not a file`, "ERR_NOT_A_DATABASE");
  if (st.size === 0) {
    if (allowEmpty || becomesDatabase(path)) return;
    throw new StoreError(
      `${path} is an empty file (0 bytes), not a database; delete it to start a new database there, or pass allowEmptyFile`,
      "ERR_EMPTY_FILE",
    );
  }
  // The header is read through SQLite, never through a descriptor of our own: closing any descriptor
  // of a file drops every POSIX lock this process holds on it, so a second open in a process that has
  // the file open already (the hub's status thread) left the first connection unlocked, and the next
  // program to close its own connection took itself for the last, checkpointed and deleted the WAL the
  // hub went on writing to: those writes were lost. SQLite keeps such a descriptor open until the
  // process's last lock on the file is gone.
  let probe: Database.Database | undefined;
  try {
    probe = new Database(path, { readonly: true, fileMustExist: true });
    probe.pragma("schema_version");
  } catch (err) {
    if ((err as { code?: string }).code === "SQLITE_NOTADB")
      throw new StoreError(`${path} is not a SQLite database; it was left untouched`, "ERR_NOT_A_DATABASE");
    // Anything else (no permission, say) is the real open's to report.
  } finally {
    probe?.close();
  }
}

/**
 * Whether an empty file is a database after all: a new WAL database keeps its
 * pages in the -wal file until a checkpoint, and one another process has just
 * created is empty until its first commit, so give that one a moment.
 */
function becomesDatabase(path: string): boolean {
  const deadline = Date.now() + EMPTY_FILE_GRACE_MS;
  for (;;) {
    if (fileSize(path) > 0 || fileSize(`${path}-wal`) > 0) return true;
    if (Date.now() >= deadline) return false;
    sleepSync(20);
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  if (o === undefined || o === null) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A NaN attempt count would retry a busy error for ever. */
function validateRetry(r: RetryOptions): void {
  checkInteger("retry.attempts", r.attempts, 0);
  checkNumber("retry.baseMs", r.baseMs, 0);
  checkNumber("retry.maxMs", r.maxMs, 0);
}

function validateOptions(o: Required<Omit<StoreOptions, "retry">>): void {
  if (!JOURNAL_MODES.has(o.journalMode))
    throw new InvalidArgumentError("journalMode", `unknown mode ${String(o.journalMode)}`);
  if (!SYNCHRONOUS.has(o.synchronous))
    throw new InvalidArgumentError("synchronous", `unknown level ${String(o.synchronous)}`);
  if (!AUTO_VACUUM.has(o.autoVacuum))
    throw new InvalidArgumentError("autoVacuum", `unknown mode ${String(o.autoVacuum)}`);
  checkInteger("busyTimeoutMs", o.busyTimeoutMs, 0);
  checkBoolean("allowEmptyFile", o.allowEmptyFile);
  checkInteger("cacheSizeKiB", o.cacheSizeKiB, 1);
}

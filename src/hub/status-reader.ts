/**
 * StatusReader: the hub's status (readStatus, src/status.ts) for GET
 * /v1/status and the dashboard, kept off the event loop and computed at most
 * so often.
 *
 * Contract: `get()` resolves the latest status with when it was read and how
 * long that took (the read alone, not the thread's start). It reads again
 * only once the last read is older than max(minIntervalMs, costFactor (20) ×
 * its duration), at most a minute, one read at a time however many
 * callers wait: counting a log of a million entries takes ~0.3 s (a relay's,
 * ~1 s), and a dashboard left open must neither redo that every two seconds
 * nor stall sync requests while it runs. So the read runs in a worker thread
 * on its own read-only connection; where that module is not built (running
 * from sources, as the unit tests do) it runs inline on the caller's store.
 * A failed read rejects its callers and is retried by the next `get`.
 * `readers`, when given, is asked at each read for the log positions whose
 * lag the status should hold (a hub's clients' last pulls).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { LagQuery } from "../replica/lag.js";
import { readStatus, type Status } from "../status.js";
import type { Store } from "../store.js";

export interface StatusRead {
  status: Status;
  /** Epoch ms the read started. */
  at: number;
  ms: number;
}

const WORKER = new URL("./status-worker.js", import.meta.url);
/** However long a read took, counts are never older than this. */
const MAX_INTERVAL_MS = 60_000;

export class StatusReader {
  readonly mode: "worker" | "inline";
  private worker: Worker | null = null;
  private last: StatusRead | null = null;
  private pending: Promise<StatusRead> | null = null;

  private readonly minIntervalMs: number;
  private readonly costFactor: number;
  private readonly readers: () => LagQuery[];

  constructor(
    private readonly store: Store,
    options: { minIntervalMs?: number; costFactor?: number; readers?: () => LagQuery[] } = {},
  ) {
    this.minIntervalMs = options.minIntervalMs ?? 2000;
    this.costFactor = options.costFactor ?? 20;
    this.readers = options.readers ?? (() => []);
    this.mode = existsSync(fileURLToPath(WORKER)) ? "worker" : "inline";
  }

  get(): Promise<StatusRead> {
    const last = this.last;
    if (last && Date.now() - last.at < this.intervalAfter(last)) return Promise.resolve(last);
    this.pending ??= this.read().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  /** How long a read stands: what it cost, times costFactor, within [minIntervalMs, MAX_INTERVAL_MS]. */
  private intervalAfter(read: StatusRead): number {
    return Math.max(this.minIntervalMs, Math.min(MAX_INTERVAL_MS, this.costFactor * read.ms));
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    await w?.terminate();
  }

  private async read(): Promise<StatusRead> {
    const at = Date.now();
    const readers = this.readers();
    if (this.mode === "worker") {
      const { status, ms } = await this.ask(readers);
      this.last = { status, at, ms: Math.round(ms) };
    } else {
      const status = readStatus(this.store, { readers });
      this.last = { status, at, ms: Date.now() - at };
    }
    return this.last;
  }

  private ask(readers: LagQuery[]): Promise<{ status: Status; ms: number }> {
    if (!this.worker) {
      this.worker = new Worker(WORKER, { workerData: { path: this.store.path } });
      // An idle worker must not keep the process alive; a dead one is made anew next time.
      this.worker.unref();
      const made = this.worker;
      made.on("error", () => {
        if (this.worker === made) this.worker = null;
      });
    }
    const w = this.worker;
    return new Promise((resolve, reject) => {
      const settle = () => {
        w.off("message", done);
        w.off("error", fail);
        w.off("exit", exited);
      };
      const done = (reply: { status?: Status; ms?: number; error?: string }) => {
        settle();
        if (reply.status) resolve({ status: reply.status, ms: reply.ms ?? 0 });
        else reject(new Error(`cannot read the status: ${reply.error}`));
      };
      const fail = (err: Error) => {
        settle();
        reject(new Error(`the status thread failed: ${err.message}`));
      };
      // Terminated by close() mid-read: the request is answered, not left to hold the server open.
      const exited = () => {
        settle();
        reject(new Error("the status thread stopped: the hub is closing"));
      };
      w.on("message", done);
      w.on("error", fail);
      w.on("exit", exited);
      w.postMessage({ readers });
    });
  }
}

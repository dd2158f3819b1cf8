/**
 * What a job handler is and gets: its signature, its context (an AbortSignal
 * made only when the handler reads it), and the error of an attempt that
 * outlived its time limit. The Worker runs handlers; this is their side.
 */
import type { Job } from "./types.js";

export interface HandlerContext {
  /**
   * Aborted when the job's lease is lost (the job was cancelled or reaped), when the attempt
   * timed out, or when `stop({ timeoutMs })` gave up waiting: its outcome will be dropped.
   */
  signal: AbortSignal;
}

export type Handler<P = unknown> = (job: Job<P>, context: HandlerContext) => unknown | Promise<unknown>;
// biome-ignore lint/suspicious/noExplicitAny: a handler declares its own payload type; any lets Handler<Foo> fit
export type Handlers = Record<string, Handler<any>>;

/** The error of an attempt that outlived its time limit. */
export class JobTimeoutError extends Error {
  override name = "JobTimeoutError";
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
  }
}

/**
 * A handler's context whose AbortController is made only if the handler reads
 * `signal`: most handlers never do, and one controller per job costs a
 * measurable share of a fast queue's throughput.
 */
export class LazyContext implements HandlerContext {
  private controller: AbortController | undefined;
  private reason: Error | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    this.reason ??= reason;
    this.controller?.abort(reason);
  }
}

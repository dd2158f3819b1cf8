/**
 * Scheduler: fires a queue's periodic jobs. Run one in every process that
 * should be able to fire them; the queue makes each period fire once across
 * all of them (see `Queue.firePeriodic`).
 */
import { EventEmitter } from "node:events";
import type { JobQueue } from "./types.js";

export class Scheduler extends EventEmitter {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly queue: JobQueue,
    private readonly options: { tickMs?: number } = {},
  ) {
    super();
  }

  start(): this {
    if (this.timer) return this;
    const tick = () => {
      try {
        const n = this.queue.firePeriodic();
        if (n > 0) this.emit("fired", n);
      } catch (err) {
        if (this.listenerCount("error") > 0) this.emit("error", err);
      }
    };
    this.timer = setInterval(tick, this.options.tickMs ?? 1000);
    tick();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

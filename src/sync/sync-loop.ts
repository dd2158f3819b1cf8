/**
 * SyncLoop: a SyncManager's background loop — when a cycle runs, and what
 * keeps the process alive while the loop is on.
 *
 * Contract: `start` makes every leg due now, runs them, and resolves once
 * the first handshake was accepted (`settleStart(null)`, which then
 * subscribes to live notices through `subscribe`) or rejects with its error
 * (`settleStart(error)`), halting the loop. After every cycle, whatever
 * happened, the loop re-arms: the next leg due on success, the backoff
 * (`retryIn`) on failure. `kick` runs legs now (a live notice's pull).
 * `halt` drops the timer, the keep-alive handle and the subscription:
 * nothing more starts, the cycle in flight runs on.
 */
import { TidewireError } from "../errors.js";
import { detached } from "../trace.js";
import type { LegName, SyncSchedule } from "./sync-schedule.js";

export interface LoopHooks {
  /** Runs a cycle of `legs` (or joins the one queued). */
  run(legs: readonly LegName[]): Promise<unknown>;
  /** The backoff after the failure just seen, ms. */
  retryIn(): number;
  /** Subscribes to live notices, if the transport can; returns the unsubscribe. */
  subscribe(): (() => void) | null;
  /** The loop set its timer for `at` (epoch ms), or cleared it (undefined). */
  armed(at: number | undefined): void;
}

export class SyncLoop {
  private on = false;
  private timer: NodeJS.Timeout | null = null;
  private keepAlive: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  /** `start`'s promise, until the loop's first handshake settles it. */
  private starting: { resolve: () => void; reject: (error: Error) => void } | null = null;

  constructor(
    private readonly schedule: SyncSchedule,
    private readonly hooks: LoopHooks,
  ) {}

  get started(): boolean {
    return this.on;
  }

  start(): Promise<void> {
    if (this.on)
      return Promise.reject(
        new TidewireError("the sync loop is already started; stop() it first", "ERR_ALREADY_STARTED"),
      );
    this.on = true;
    // A started loop keeps its process alive even while a call waits on a socket Node does not count.
    this.keepAlive = setInterval(() => {}, 60_000);
    const first = new Promise<void>((resolve, reject) => {
      this.starting = { resolve, reject };
    });
    this.schedule.restart(Date.now());
    this.kick(this.schedule.legs);
    return first;
  }

  halt(): void {
    this.on = false;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Settles `start`'s promise once: an accepted first handshake subscribes, a failed one halts the loop. */
  settleStart(error: Error | null): void {
    const starting = this.starting;
    if (!starting) return;
    this.starting = null;
    if (error) {
      this.halt();
      starting.reject(error);
      return;
    }
    if (this.on) this.unsubscribe = this.hooks.subscribe();
    starting.resolve();
  }

  /** Runs `legs` now, then re-arms the timer whatever happened. */
  kick(legs: readonly LegName[]): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    detached(() => this.hooks.run(legs))
      .then(
        () => this.schedule.ran(legs, Date.now()),
        () => this.schedule.failed(Date.now(), this.hooks.retryIn()),
      )
      .then(() => this.arm())
      .catch(() => {});
  }

  /**
   * Sets the timer for the next leg due, even while another cycle runs (its
   * firing then queues one more): a loop whose timer was skipped would leave
   * nothing to wake it, and a CLI process with no timer exits.
   */
  private arm(): void {
    if (!this.on) return;
    if (this.timer) clearTimeout(this.timer);
    const at = this.schedule.nextAt();
    this.timer = setTimeout(() => this.kick(this.schedule.due(Date.now())), Math.max(0, at - Date.now()));
    this.hooks.armed(at);
  }
}

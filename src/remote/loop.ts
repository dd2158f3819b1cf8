/**
 * SyncLoop: runs a RemoteSync's cycle every interval until stopped.
 *
 * Contract: the first cycle starts at once; the next starts `intervalSeconds`
 * after the previous one ended, so cycles never overlap. An interval below
 * 1 s is clamped to 1 s (with a warning). A cycle's failure goes to
 * `onCycle` and the next cycle retries; `resync` applies to the first cycle
 * only. `stop` cancels the next cycle; the owner waits for the one in flight.
 */
import { InvalidArgumentError } from "../errors.js";
import { checkNumber, checkObject } from "../validate.js";
import type { SyncResult } from "./push-options.js";

export interface LoopOptions {
  intervalSeconds: number;
  resync?: boolean;
  onCycle?: (result: SyncResult | null, error: Error | null) => void;
  onWarning?: (message: string) => void;
}

export class SyncLoop {
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;

  constructor(
    private readonly cycle: (resync: boolean) => Promise<SyncResult>,
    /** What a cycle does, for the warning: push, pull or sync. */
    private readonly verb: () => string,
  ) {}

  /** Checks the options, then calls `before` and starts; throws when already running. */
  start(options: LoopOptions, before: () => void): void {
    const s = checkNumber("intervalSeconds", checkObject("options", options).intervalSeconds, 0);
    if (!this.stopped) throw new InvalidArgumentError("start", "the sync loop is already running");
    let seconds = s;
    if (seconds < 1) {
      seconds = 1;
      options.onWarning?.(`an interval of ${s} s would ${this.verb()} without pause; using 1 s`);
    }
    before();
    this.stopped = false;
    let resync = options.resync === true;
    const tick = async () => {
      this.timer = null;
      if (this.stopped) return;
      try {
        const r = await this.cycle(resync);
        resync = false;
        options.onCycle?.(r, null);
      } catch (err) {
        options.onCycle?.(null, err as Error);
      }
      if (!this.stopped) this.timer = setTimeout(tick, seconds * 1000);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

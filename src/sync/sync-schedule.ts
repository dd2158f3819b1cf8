/**
 * SyncSchedule: when each leg (push, pull) of a SyncManager's background
 * loop is next due, each on its own interval.
 *
 * Contract: `restart` makes every leg due now. `due` names the legs whose
 * time has come, with any other leg due within a tenth of its own interval,
 * so two legs whose times nearly meet share one cycle (one handshake, one
 * wake-up) and neither runs more than a tenth early; it is never empty.
 * `ran` puts a leg that succeeded one interval from now. `failed` holds
 * every leg back until the backoff is over (a leg due later keeps its time):
 * a failure is the hub's or the link's, which the other leg would meet too.
 * `nextAt` is the earliest due time.
 */
export type LegName = "push" | "pull";

/** A leg may join a cycle this fraction of its interval early. */
const JOIN_EARLY = 0.1;

export class SyncSchedule {
  private readonly dueAt = new Map<LegName, number>();

  constructor(
    /** The legs the loop runs (a push-only manager has no pull leg). */
    readonly legs: readonly LegName[],
    private readonly intervals: Readonly<Record<LegName, number>>,
  ) {
    this.restart(0);
  }

  restart(now: number): void {
    for (const leg of this.legs) this.dueAt.set(leg, now);
  }

  due(now: number): LegName[] {
    const due = this.legs.filter((l) => this.at(l) <= now + this.intervals[l] * JOIN_EARLY);
    if (due.length > 0) return due;
    // A timer may fire a hair early against Date.now(): the earliest leg is the one it was set for.
    return [this.legs.reduce((a, b) => (this.at(b) < this.at(a) ? b : a))];
  }

  ran(legs: readonly LegName[], now: number): void {
    for (const leg of legs) if (this.dueAt.has(leg)) this.dueAt.set(leg, now + this.intervals[leg]);
  }

  failed(now: number, retryInMs: number): void {
    for (const leg of this.legs) this.dueAt.set(leg, Math.max(this.at(leg), now + retryInMs));
  }

  nextAt(): number {
    return Math.min(...this.legs.map((l) => this.at(l)));
  }

  private at(leg: LegName): number {
    return this.dueAt.get(leg) ?? 0;
  }
}

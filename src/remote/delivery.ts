/**
 * Delivery: how a RemoteSync's payloads reach the target — spooled first,
 * sent, and only then the cursor moved.
 *
 * Contract: `deliver` spools a payload and sends it; `sendPending` sends
 * what earlier cycles left in the spool, oldest first, and stops at the
 * first failure (a full copy spooled for another shape of the tables is
 * dropped instead). The cursor moves only after the target accepted the
 * payload or already had its sync key; a failure defers the payload (or
 * drops it once it spent its attempts) and leaves the cursor. A payload
 * refused for its data (DATA_REFUSED) drops the whole spool and the cursor,
 * so the next cycle is a full push from the current rows.
 */
import type { CopyStat, FullPush } from "./full-push.js";
import type { Payload } from "./payload.js";
import type { PayloadSpool } from "./spool.js";
import { DATA_REFUSED, describeError, RemoteError, type RemoteTarget } from "./target.js";

/** What a push cycle counts as it goes. */
export interface Stat extends CopyStat {
  mode: "full" | "incremental";
  payloads: number;
  duplicates: number;
  retried: number;
}

/** The push cursor of one target and filter: set (and flushed at once), or dropped. */
export interface PushCursor {
  set(cursor: string): void;
  drop(): void;
}

export class Delivery {
  constructor(
    private readonly target: RemoteTarget,
    private readonly spool: PayloadSpool,
    private readonly full: FullPush,
    private readonly cursor: PushCursor,
    private readonly keepHistory: number,
  ) {}

  /** Spools the payload, then sends it. */
  async deliver(p: Payload, stat: Stat): Promise<void> {
    await this.send(this.spool.put(p), p, stat);
  }

  private async send(id: number, p: Payload, stat: Stat): Promise<void> {
    this.spool.sending(id);
    let outcome: "applied" | "duplicate";
    try {
      outcome = p.copy ? await this.full.copy(p, stat) : await this.target.apply(p, this.keepHistory);
    } catch (err) {
      const e =
        err instanceof RemoteError ? err : new RemoteError(`${this.target.id}: ${describeError(err)}`);
      if (e.code === DATA_REFUSED) throw this.refused(e, p.copy === true);
      const fate = this.spool.failed(id, e)
        ? "the payload has spent its attempts and is dropped; the next cycle rebuilds it from the change log"
        : "the payload stays in the outbox for the next cycle";
      throw new RemoteError(`${e.message}; the cursor did not move and ${fate}`);
    }
    // Cursor before `accepted`: a crash between the two re-sends a payload the target already has, which is harmless.
    if (p.cursor !== null) {
      this.cursor.set(p.cursor);
    }
    this.spool.accepted(id);
    stat.payloads++;
    stat.mutations += p.mutations.length;
    if (p.copy) stat.mode = "full";
    if (outcome === "duplicate") stat.duplicates++;
  }

  /**
   * Resending a payload the target refused for its data would fail forever:
   * it (and whatever is spooled behind it) is dropped, and the cursor goes,
   * so the next cycle pushes the current rows in full.
   */
  private refused(e: RemoteError, copy: boolean): RemoteError {
    for (const id of this.spool.pending()) this.spool.abandon(id, `refused for its data: ${e.message}`);
    this.cursor.drop();
    // A copy read the current rows already: its own message says what to fix.
    if (copy) return e;
    return new RemoteError(
      `${e.message}; the payload was dropped and the next cycle pushes every table again from the current rows, ` +
        "creating a column whose values do not fit its type as text or any (see docs/architecture.md, Remote push) " +
        "unless --pg-type sets it; fix the row first if the value is wrong",
      DATA_REFUSED,
    );
  }

  /** Sends spooled payloads left by an earlier cycle, oldest first; stops at the first failure. */
  async sendPending(stat: Stat, shape: string): Promise<void> {
    for (const id of this.spool.pending()) {
      const p = this.spool.read(id);
      if (!p) continue;
      if (p.copy && !this.full.current(p, shape)) {
        this.spool.abandon(id, "the tables changed shape; a new full push replaces this one");
        continue;
      }
      await this.send(id, p, stat);
      stat.retried++;
    }
  }
}

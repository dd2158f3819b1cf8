/**
 * PayloadSpool: the outbox as one target sees it — payloads spooled before
 * they are sent, and the moves that record what became of each.
 *
 * Contract: a payload is stored (incoming) before anyone sends it; it is
 * active while being sent, delivered once the target accepted it, deferred
 * when the target failed (bounced when its attempts are spent). `pending`
 * lists this target's payloads not yet delivered, oldest first, whatever
 * state a crash left them in, so they are sent again in their order.
 */
import { Outbox } from "../outbox/outbox.js";
import type { OutboxState } from "../outbox/types.js";
import type { Store } from "../store.js";
import { type Payload, parsePayload, serializePayload } from "./payload.js";

const PENDING: OutboxState[] = ["active", "incoming", "deferred"];

export class PayloadSpool {
  private readonly outbox: Outbox;

  constructor(
    store: Store,
    name: string,
    private readonly target: string,
  ) {
    this.outbox = new Outbox(store, name);
  }

  put(p: Payload): number {
    return this.outbox.store(serializePayload(p), {
      headers: { target: this.target, name: p.name, key: p.key, mode: p.mode },
    }).id;
  }

  /** This target's undelivered payloads, oldest first. */
  pending(): number[] {
    const ids: number[] = [];
    for (const state of PENDING) {
      for (const m of this.outbox.list({ state, limit: 100_000 })) {
        if (m.headers.target === this.target) ids.push(m.id);
      }
    }
    return ids.sort((a, b) => a - b);
  }

  /** The payload, or null when the body cannot be read (it is then bounced). */
  read(id: number): Payload | null {
    const m = this.outbox.get(id);
    if (!m) return null;
    try {
      return parsePayload(String(m.body));
    } catch (err) {
      this.abandon(id, `unreadable payload: ${(err as Error).message}`);
      return null;
    }
  }

  sending(id: number): void {
    if (this.outbox.getMeta(id)?.state !== "active") {
      this.outbox.moveToState(id, "active", { from: ["incoming", "deferred"] });
    }
  }

  accepted(id: number): void {
    this.outbox.delivered(id);
  }

  /** Defers the payload after a failed attempt; true when it bounced instead (attempts spent). */
  failed(id: number, error: Error): boolean {
    return this.outbox.defer(id, error)?.state === "bounced";
  }

  /** Bounces a payload that must never be sent (a resync replaced it, or it is unreadable). */
  abandon(id: number, why: string): void {
    this.outbox.moveToState(id, "active", { from: ["incoming", "deferred"] });
    if (this.outbox.moveToState(id, "bounced", { from: "active" })) return;
    this.outbox.defer(id, why);
  }

  /** Delivered payloads have served their purpose; their bodies would only grow the file. */
  purgeDelivered(): void {
    this.outbox.purge({ olderThanMs: 0, states: ["delivered"] });
  }
}

/**
 * Outbox counts: how many messages each outbox (spool) of a database holds in
 * each state, for `tidewire status`, `tidewire jobs stats` and GET /v1/status.
 *
 * Contract: reads only, on any Store (read-only ones included); an outbox
 * with no message left does not appear.
 */
import type { Store } from "../store.js";
import { OUTBOX_STATES, type OutboxCounts, type OutboxState } from "./types.js";

const BY_SPOOL = "SELECT spool, state, count(*) AS n FROM tw_outbox GROUP BY spool, state ORDER BY spool";

/** Every state at 0. */
export function emptyCounts(): OutboxCounts {
  const out = Object.fromEntries(OUTBOX_STATES.map((s) => [s, 0])) as OutboxCounts;
  out.total = 0;
  return out;
}

export function outboxCounts(store: Store): Record<string, OutboxCounts> {
  const out: Record<string, OutboxCounts> = {};
  if (!store.hasTable("tw_outbox")) return out;
  const rows = store.db.prepare(BY_SPOOL).all() as Array<{ spool: string; state: OutboxState; n: number }>;
  for (const r of rows) {
    const c = out[r.spool] ?? emptyCounts();
    out[r.spool] = c;
    c[r.state] = r.n;
    c.total += r.n;
  }
  return out;
}

/**
 * Clients: the replicas a hub has heard from since it started, as GET
 * /v1/status and the dashboard show them.
 *
 * Contract: in memory only, like the counters in /metrics: a restarted hub
 * starts with none. Bounded: past `max` node ids the one heard from longest
 * ago is forgotten, so callers that make up a node id per request cannot
 * grow it without end. Counts are changes the hub received (pushed) and
 * served (pulled), the same figures as tidewire_hub_changes_total.
 */

export type ClientAction = "handshake" | "pull" | "push";

export interface ClientActivity {
  nodeId: string;
  firstSeenAt: number;
  lastSeenAt: number;
  lastAction: ClientAction;
  /** Buckets named in its requests, sorted. */
  buckets: string[];
  pushed: number;
  pulled: number;
}

export class Clients {
  // A Map iterates in insertion order: re-inserting on every request keeps the oldest first.
  private readonly seen = new Map<string, ClientActivity>();

  constructor(readonly max = 1000) {}

  record(nodeId: string, action: ClientAction, buckets: Iterable<string>, changes = 0): void {
    const now = Date.now();
    const known = this.seen.get(nodeId);
    const client = known ?? {
      nodeId,
      firstSeenAt: now,
      lastSeenAt: now,
      lastAction: action,
      buckets: [],
      pushed: 0,
      pulled: 0,
    };
    client.lastSeenAt = now;
    client.lastAction = action;
    if (action === "push") client.pushed += changes;
    if (action === "pull") client.pulled += changes;
    let added = false;
    for (const b of buckets)
      if (!client.buckets.includes(b)) {
        client.buckets.push(b);
        added = true;
      }
    if (added) client.buckets.sort();
    this.seen.delete(nodeId);
    this.seen.set(nodeId, client);
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value as string);
  }

  /** Every client, the one heard from last first; copies, so callers cannot change the record. */
  list(): ClientActivity[] {
    return [...this.seen.values()].reverse().map((c) => ({ ...c, buckets: [...c.buckets] }));
  }
}

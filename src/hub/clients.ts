/**
 * Clients: the replicas a hub has heard from since it started, as GET
 * /v1/status and the dashboard show them.
 *
 * Contract: in memory only, like the counters in /metrics: a restarted hub
 * starts with none. Bounded: past `max` node ids the one heard from longest
 * ago is forgotten, so callers that make up a node id per request cannot
 * grow it without end. Counts are changes the hub received (pushed) and
 * served (pulled), the same figures as tidewire_hub_changes_total. A pull
 * keeps the cursor the hub answered it with — where the client stands in the
 * hub's log once it applied that page; one that failed pulls again from its
 * own cursor, which puts it back — per set of buckets, which `positions`
 * hands to the status read to compute each client's lag (src/replica/lag.ts). A refused request of a
 * known node id is kept as its last error; a request that succeeds after it
 * does not clear it (it says when), so the operator still sees what failed.
 */
import type { Lag, LagQuery } from "../replica/lag.js";

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
  /** Epoch ms of its last request the hub answered with success. */
  lastSuccessAt: number | null;
  lastError: string | null;
  lastErrorAt: number | null;
  /** Per set of buckets pulled (joined by ","): the cursor its last pull of them was answered with. */
  pulls: Record<string, string>;
}

/** Sets of buckets kept per client: a client pulls one or a few. */
const MAX_PULL_SETS = 16;

export class Clients {
  // A Map iterates in insertion order: re-inserting on every request keeps the oldest first.
  private readonly seen = new Map<string, ClientActivity>();

  constructor(readonly max = 1000) {}

  record(
    nodeId: string,
    action: ClientAction,
    buckets: Iterable<string>,
    changes = 0,
    cursor?: string,
  ): void {
    const client = this.touch(nodeId, action);
    client.lastSuccessAt = client.lastSeenAt;
    if (action === "push") client.pushed += changes;
    if (action === "pull") client.pulled += changes;
    const named = [...buckets];
    if (cursor !== undefined) {
      const key = [...named].sort().join(",");
      delete client.pulls[key];
      client.pulls[key] = cursor;
      const keys = Object.keys(client.pulls);
      if (keys.length > MAX_PULL_SETS) delete client.pulls[keys[0]!];
    }
    let added = false;
    for (const b of named)
      if (!client.buckets.includes(b)) {
        client.buckets.push(b);
        added = true;
      }
    if (added) client.buckets.sort();
  }

  /** A request of `nodeId` the hub refused, with the refusal's message. */
  failed(nodeId: string, action: ClientAction, message: string): void {
    const client = this.touch(nodeId, action);
    client.lastError = message;
    client.lastErrorAt = client.lastSeenAt;
  }

  /** Every client, the one heard from last first; copies, so callers cannot change the record. */
  list(): ClientActivity[] {
    return [...this.seen.values()]
      .reverse()
      .map((c) => ({ ...c, buckets: [...c.buckets], pulls: { ...c.pulls } }));
  }

  /** Where each client's pulls stand, as readers of the log: the key is `nodeId` and the bucket set. */
  positions(): LagQuery[] {
    const out: LagQuery[] = [];
    for (const c of this.seen.values())
      for (const [set, cursor] of Object.entries(c.pulls))
        out.push({ key: positionKey(c.nodeId, set), cursor, buckets: set.split(","), node: c.nodeId });
    return out;
  }

  private touch(nodeId: string, action: ClientAction): ClientActivity {
    const now = Date.now();
    const client = this.seen.get(nodeId) ?? {
      nodeId,
      firstSeenAt: now,
      lastSeenAt: now,
      lastAction: action,
      buckets: [],
      pushed: 0,
      pulled: 0,
      lastSuccessAt: null,
      lastError: null,
      lastErrorAt: null,
      pulls: {},
    };
    client.lastSeenAt = now;
    client.lastAction = action;
    this.seen.delete(nodeId);
    this.seen.set(nodeId, client);
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value as string);
    return client;
  }
}

/** The key a client's position is reported under in `readerLag`. */
export function positionKey(nodeId: string, bucketSet: string): string {
  return `${nodeId}\u0000${bucketSet}`;
}

/**
 * A client with its lag: of the bucket sets it pulls, the one furthest behind
 * (most changes waiting, then the oldest), as the status read counted them
 * (`readerLag`); null before a read counted any of its pulls.
 */
export function withLag(
  client: ClientActivity,
  readerLag: Record<string, Lag | null>,
): ClientActivity & { lag: Lag | null } {
  let worst: Lag | null = null;
  for (const set of Object.keys(client.pulls)) {
    const lag = readerLag[positionKey(client.nodeId, set)];
    if (!lag) continue;
    if (
      !worst ||
      lag.changes > worst.changes ||
      (lag.changes === worst.changes && (lag.oldestAt ?? Infinity) < (worst.oldestAt ?? Infinity))
    )
      worst = lag;
  }
  return { ...client, lag: worst };
}

/**
 * Live notification: the hub says `{ type: "changes", buckets }` whenever a
 * push changed those buckets, so subscribers pull at once instead of waiting
 * for their next poll. Subscribers are sockets on GET /v1/live (`?buckets=a,b`,
 * they only listen) and sync sockets on GET /v1/ws that sent "subscribe".
 *
 * Contract: `LiveNotices` sends each subscribed socket the notices for its
 * buckets while it is open, and forgets it when it closes. `liveEndpoint`
 * admits an upgrade to /v1/live only when `?buckets=` names buckets the hub
 * serves and the token may read (400, 403 or 404 otherwise; admission and its
 * bounds are sockets.ts's). A notice carries no changes, only the news, so a
 * lost one costs a poll interval, never data.
 */
import type { WebSocket } from "ws";
import { HubError } from "../errors.js";
import type { Hub } from "./hub.js";
import type { SocketEndpoint } from "./sockets.js";

export class LiveNotices {
  private readonly subscribers = new Map<WebSocket, Set<string>>();
  private readonly onChanges = (buckets: string[]) => {
    for (const [ws, wanted] of this.subscribers) {
      const hit = buckets.filter((b) => wanted.has(b));
      if (hit.length && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: "changes", buckets: hit }));
    }
  };

  constructor(private readonly hub: Hub) {
    hub.on("changes", this.onChanges);
  }

  /** Subscribes `ws` to `buckets` (added to those it has), until it closes. */
  add(ws: WebSocket, buckets: string[]): void {
    const had = this.subscribers.get(ws);
    if (had) {
      for (const b of buckets) had.add(b);
      return;
    }
    this.subscribers.set(ws, new Set(buckets));
    const drop = () => this.subscribers.delete(ws);
    ws.on("close", drop);
    ws.on("error", drop);
  }

  /** Sockets subscribed now (GET /v1/status shows it). */
  get size(): number {
    return this.subscribers.size;
  }

  close(): void {
    this.hub.off("changes", this.onChanges);
    this.subscribers.clear();
  }
}

/** GET /v1/live: a socket that only listens to the notices for `?buckets=a,b`. */
export function liveEndpoint(hub: Hub, notices: LiveNotices): SocketEndpoint {
  const wanted = (url: URL) => (url.searchParams.get("buckets") ?? "").split(",").filter((b) => b !== "");
  return {
    path: "/v1/live",
    maxPayload: 4096,
    admit(url, scope) {
      const buckets = wanted(url);
      if (buckets.length === 0) throw new HubError(400, "ERR_MALFORMED", "?buckets=a,b is required");
      hub.checkBuckets(buckets, scope, false);
    },
    // Clients only listen; anything they send is ignored.
    connect: (ws, _scope, url) => notices.add(ws, wanted(url)),
  };
}

/**
 * MemoryTransport: a Transport to a Hub in the same process, for tests.
 *
 * Contract: `MemoryTransport.pair(hub)` gives a transport and a switchboard
 * that controls it. Every request and answer goes through JSON, as on the
 * wire, and is parsed with the protocol's schemas on both sides, so what
 * works here works over HTTP. A hub refusal arrives as a HubRefusedError with the
 * status HTTP would carry. The switchboard can take the link down or fail
 * the next n calls, to exercise retry and backoff.
 */

import { HubError } from "../../errors.js";
import { FULL_SCOPE, type Scope } from "../../scope.js";
import {
  type HandshakeRequest,
  type HandshakeResponse,
  handshakeResponse,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  parse,
  pullResponse,
  pushResponse,
} from "../protocol.js";
import { HubRefusedError, hubRefusal, type Transport } from "../transport.js";

/**
 * What MemoryTransport serves from: a hub's three calls, answered for a
 * credential's Scope, and its "changes" event. Hub is one; an interface, so
 * that sync/ does not import hub/, which imports the sync protocol.
 */
export interface LocalHub {
  handshake(body: unknown, scope: Scope): unknown;
  pull(body: unknown, scope: Scope): unknown;
  push(body: unknown, scope: Scope): unknown;
  on(event: "changes", listener: (buckets: string[]) => void): unknown;
  off(event: "changes", listener: (buckets: string[]) => void): unknown;
}

/** Controls a MemoryTransport's link to its hub. */
export interface Switchboard {
  /** While true, every call fails as a refused connection would. */
  offline: boolean;
  /** Fail this many coming calls (then work again). */
  failNext(n: number): void;
  /** Calls made so far, by kind. */
  readonly calls: { handshake: number; pull: number; push: number };
}

export class MemoryTransport implements Transport {
  readonly peer = "memory";
  private failures = 0;
  private readonly listeners = new Set<{ buckets: Set<string>; fn: (b: string[]) => void }>();
  readonly switchboard: Switchboard;
  private readonly onHubChanges = (buckets: string[]) => {
    for (const l of this.listeners) {
      const hit = buckets.filter((b) => l.buckets.has(b));
      if (hit.length) queueMicrotask(() => l.fn(hit));
    }
  };

  private constructor(
    private readonly hub: LocalHub,
    private readonly scope: Scope,
  ) {
    const self = this;
    const calls = { handshake: 0, pull: 0, push: 0 };
    this.switchboard = {
      offline: false,
      failNext(n: number) {
        self.failures = n;
      },
      calls,
    };
    hub.on("changes", this.onHubChanges);
  }

  static pair(hub: LocalHub, scope: Scope = FULL_SCOPE): [MemoryTransport, Switchboard] {
    const t = new MemoryTransport(hub, scope);
    return [t, t.switchboard];
  }

  handshake(request: HandshakeRequest): Promise<HandshakeResponse> {
    return this.call("handshake", request, (b) => this.hub.handshake(b, this.scope), handshakeResponse);
  }

  pull(request: PullRequest): Promise<PullResponse> {
    return this.call("pull", request, (b) => this.hub.pull(b, this.scope), pullResponse);
  }

  push(request: PushRequest): Promise<PushResponse> {
    return this.call("push", request, (b) => this.hub.push(b, this.scope), pushResponse);
  }

  subscribe(buckets: string[], onChanges: (buckets: string[]) => void): () => void {
    const l = { buckets: new Set(buckets), fn: onChanges };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.hub.off("changes", this.onHubChanges);
  }

  private async call<T>(
    kind: keyof Switchboard["calls"],
    request: unknown,
    serve: (body: unknown) => unknown,
    schema: Parameters<typeof parse>[0],
  ): Promise<T> {
    this.switchboard.calls[kind]++;
    // A turn of the event loop, as a network would take.
    await new Promise((r) => setImmediate(r));
    if (this.switchboard.offline || this.failures > 0) {
      if (this.failures > 0) this.failures--;
      throw Object.assign(new Error("connect ECONNREFUSED (memory transport is down)"), {
        code: "ECONNREFUSED",
      });
    }
    let answer: unknown;
    try {
      answer = serve(JSON.parse(JSON.stringify(request)));
    } catch (err) {
      if (err instanceof HubError) throw hubRefusal(err.status, err.code, err.message);
      throw new HubRefusedError(500, "ERR_INTERNAL", (err as Error).message);
    }
    return parse(schema, JSON.parse(JSON.stringify(answer)), `${kind} answer`) as T;
  }
}

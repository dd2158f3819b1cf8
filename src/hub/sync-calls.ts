/**
 * SyncCalls: the protocol's three calls as every hub endpoint serves them —
 * the HTTP routes (routes.ts) and the WebSocket endpoint (socket-calls.ts) —
 * and the answer a failed call gets.
 *
 * Contract: `callHub` runs the Hub's handler for one call through the write
 * gate (so a call waits off the event loop for another program's lock) and
 * resolves with its answer. `refusal` turns what a call threw into the
 * answer both endpoints send — status, code, one clear sentence and, for a
 * refusal that will pass, Retry-After seconds — or null for an internal
 * failure (the endpoint logs it and answers 500). One table of calls and one
 * mapping, so the two endpoints cannot drift apart.
 */
import { HubError } from "../errors.js";
import type { BusyOperation } from "../metrics.js";
import type { Scope } from "../scope.js";
import { isBusy } from "../store.js";
import type { Hub } from "./hub.js";
import { RetryLaterError } from "./limits.js";
import { DatabaseBusyError, type WriteGate } from "./write-gate.js";

export type SyncCall = "handshake" | "pull" | "push";

export const SYNC_CALLS: readonly SyncCall[] = ["handshake", "pull", "push"];

const OPERATIONS: Record<SyncCall, BusyOperation> = {
  handshake: "hub.handshake",
  pull: "hub.pull",
  push: "hub.push",
};

/** The hub's answer to one call, or its refusal (thrown). */
export function callHub(hub: Hub, gate: WriteGate, call: SyncCall, body: unknown, scope: Scope) {
  if (body === undefined || body === null) {
    return Promise.reject(new HubError(400, "ERR_MALFORMED", "the request needs a JSON body"));
  }
  return gate.run(() => hub[call](body, scope), undefined, OPERATIONS[call]);
}

export interface Refusal {
  status: number;
  code: string;
  message: string;
  /** The refusal will pass: try again after this many seconds. */
  retryAfterSeconds?: number;
}

const DISK_FULL = new Set<unknown>(["SQLITE_FULL", "ENOSPC"]);

/**
 * What a call that threw `err` answers, or null for a failure of the hub's
 * own (500). `onDiskFull` hears of a full disk, which the operator must see.
 */
export function refusal(err: unknown, onDiskFull: (err: unknown) => void): Refusal | null {
  // A lock met outside the gate (a route that does not wait) is as temporary as one met inside.
  const later = err instanceof RetryLaterError ? err : isBusy(err) ? new DatabaseBusyError(1, 0) : null;
  if (later) {
    return {
      status: later.status,
      code: later.code,
      message: later.message,
      retryAfterSeconds: later.retryAfterSeconds,
    };
  }
  if (err instanceof HubError) return { status: err.status, code: err.code, message: err.message };
  // The database's or a pin's: the same request may succeed once there is room.
  if (DISK_FULL.has((err as { code?: unknown })?.code)) {
    onDiskFull(err);
    return {
      status: 507,
      code: "ERR_DISK_FULL",
      message: "the hub's disk is full; retry once space is freed",
    };
  }
  return null;
}

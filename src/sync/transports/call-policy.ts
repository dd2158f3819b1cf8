/**
 * CallPolicy: what the transports to a remote hub (HTTP, WebSocket) share —
 * their options, the error for a call that could not be carried, and when a
 * failed call is tried again.
 *
 * Contract: `callSettings` refuses a bad option with an InvalidArgumentError
 * naming it and fills the defaults. A call is retried, at most `retries`
 * times with a pause that doubles from `retryDelayMs`, when its connection
 * failed (`isConnectionError`: refused, reset, closed early) or the hub
 * answered 503 (its database locked by another program; the pause is then
 * its Retry-After, 10 s at most): every call is safe to repeat, since
 * applying a batch twice changes nothing.
 */

import { type BackoffCurve, exponentialDelay } from "../../backoff.js";
import { InvalidArgumentError, TidewireError } from "../../errors.js";
import { checkNumber } from "../../validate.js";

export interface CallOptions {
  /** Bearer token for the hub. */
  token?: string;
  /** Abort a call that has not been answered after this long, ms (default 30 000). */
  timeoutMs?: number;
  /** Retries after a connection error or a 503 (default 3). */
  retries?: number;
  /** Pause before the first retry, ms, doubled each time (default 100). */
  retryDelayMs?: number;
}

export interface CallSettings {
  token: string | undefined;
  timeoutMs: number;
  retries: number;
  retryDelayMs: number;
}

/** A call could not be carried to the hub and back. */
export class TransportError extends TidewireError {
  constructor(message: string, code = "ERR_TRANSPORT") {
    super(message, code);
    this.name = "TransportError";
  }
}

const CONNECTION_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "ERR_CONNECTION_CLOSED",
]);

export function callSettings(options: CallOptions): CallSettings {
  if (options.token !== undefined && (typeof options.token !== "string" || options.token === "")) {
    throw new InvalidArgumentError("token", "must be a non-empty string");
  }
  return {
    token: options.token,
    timeoutMs: checkNumber("timeoutMs", options.timeoutMs ?? 30_000, 1),
    retries: checkNumber("retries", options.retries ?? 3, 0),
    retryDelayMs: checkNumber("retryDelayMs", options.retryDelayMs ?? 100, 0),
  };
}

/** The base URL of a hub, checked: http: or https:, ending in "/" so paths resolve under it. */
export function hubBase(url: string | URL): URL {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new InvalidArgumentError("url", `is not a URL: ${JSON.stringify(String(url))}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new InvalidArgumentError("url", `must be http: or https:, got ${base.protocol}`);
  }
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  return base;
}

/** The bearer header for `token`, or none. */
export function bearer(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function isConnectionError(code: string | null): boolean {
  return code !== null && CONNECTION_ERRORS.has(code);
}

/** The pause before retry number `attempt` (from 0); a 503's Retry-After (seconds) raises it, to 10 s at most. */
export function retryPauseMs(settings: CallSettings, attempt: number, retryAfterSeconds?: number): number {
  const floor = exponentialDelay(attempt, { baseMs: settings.retryDelayMs });
  const asked =
    retryAfterSeconds !== undefined && Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0
      ? retryAfterSeconds * 1000
      : 0;
  return Math.min(10_000, Math.max(floor, asked));
}

export function errorCode(err: unknown): string | null {
  const e = err as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  if (e?.name === "TimeoutError") return "TimeoutError";
  return e?.cause?.code ?? e?.code ?? null;
}

export function describe(err: unknown): string {
  const e = err as Error & { cause?: Error };
  return e.cause?.message ? `${e.message} (${e.cause.message})` : e.message;
}

/** The pause before reopening a dropped live subscription, HTTP's or the WebSocket's: 250 ms doubling to 10 s. */
export const LIVE_RECONNECT: BackoffCurve = { baseMs: 250, maxMs: 10_000 };

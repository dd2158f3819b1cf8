/**
 * Transport: what carries protocol messages between a SyncManager and a hub.
 *
 * Contract: each call sends one request and resolves with the hub's answer,
 * already parsed with the protocol's schemas, or rejects: a `HubRefusedError` when
 * the hub answered with a refusal (4xx: retrying the same request cannot help;
 * 5xx: it may), any other error when the message could not be carried.
 * `hubRefusal` gives a refusal its class by the hub's code, so a caller tells
 * one for the credentials (`HubAuthError`) or for a bucket (`HubBucketError`)
 * from any other without reading messages. A transport may offer
 * `subscribe`, the live notification that buckets have new changes; without
 * it the SyncManager only polls.
 */
import { TidewireError } from "../errors.js";
import type {
  HandshakeRequest,
  HandshakeResponse,
  PullRequest,
  PullResponse,
  PushRequest,
  PushResponse,
} from "./protocol.js";

export interface Transport {
  /** Where the hub is, for logs and metrics (a URL, or "memory"). */
  readonly peer: string;
  handshake(request: HandshakeRequest): Promise<HandshakeResponse>;
  pull(request: PullRequest): Promise<PullResponse>;
  push(request: PushRequest): Promise<PushResponse>;
  /** Calls `onChanges` whenever the hub says one of `buckets` has new changes; returns an unsubscribe. */
  subscribe?(buckets: string[], onChanges: (buckets: string[]) => void): () => void;
  close(): Promise<void>;
}

/** The hub refused a request; `status` is the HTTP status it answered with. */
export class HubRefusedError extends TidewireError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(message, code);
    this.name = "HubRefusedError";
  }

  /** A 4xx other than 408/429: the same request would be refused again. */
  get permanent(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

/** The hub refused the credentials: no bearer token, or one it does not know (401 `ERR_UNAUTHORIZED`). */
export class HubAuthError extends HubRefusedError {
  constructor(status: number, code: string, message: string) {
    super(status, code, message);
    this.name = "HubAuthError";
  }
}

/**
 * The hub refused a bucket: one it does not serve (404 `ERR_UNKNOWN_BUCKET`)
 * or one the token may not use (403 `ERR_FORBIDDEN_BUCKET`).
 */
export class HubBucketError extends HubRefusedError {
  constructor(status: number, code: string, message: string) {
    super(status, code, message);
    this.name = "HubBucketError";
  }
}

const AUTH_CODES = new Set(["ERR_UNAUTHORIZED"]);
const BUCKET_CODES = new Set(["ERR_UNKNOWN_BUCKET", "ERR_FORBIDDEN_BUCKET"]);

/** A hub's refusal as the error class its code calls for. */
export function hubRefusal(status: number, code: string, message: string): HubRefusedError {
  if (AUTH_CODES.has(code)) return new HubAuthError(status, code, message);
  if (BUCKET_CODES.has(code)) return new HubBucketError(status, code, message);
  return new HubRefusedError(status, code, message);
}

/**
 * Transport: what carries protocol messages between a SyncManager and a hub.
 *
 * Contract: each call sends one request and resolves with the hub's answer,
 * already parsed with the protocol's schemas, or rejects: a `HubRefusedError` when
 * the hub answered with a refusal (4xx: retrying the same request cannot help;
 * 5xx: it may), any other error when the message could not be carried. A
 * transport may offer `subscribe`, the live notification that buckets have
 * new changes; without it the SyncManager only polls.
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

/**
 * `tidewire/sync`: a replica's side of syncing with a hub — SyncManager, the
 * transports it talks through, the wire protocol's types and errors, and the
 * registry of the peers (hubs) a daemon syncs with.
 *
 * Contract: loads no backend package on import; HttpTransport loads `ws` only
 * when a live connection is first opened.
 */
export { idFromAddress, type Peer, type PeerInput, type PeerState, Peers } from "../peers/peers.js";
export {
  type BatchLimits,
  CAPABILITIES,
  DEFAULT_LIMITS,
  type HandshakeRequest,
  type HandshakeResponse,
  type LiveMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
} from "./protocol.js";
export {
  type CycleResult,
  type InitialSyncOptions,
  type RetryOptions,
  type SyncDirection,
  type SyncLogger,
  SyncManager,
  type SyncManagerOptions,
  type SyncPosition,
  type SyncState,
  type SyncStatus,
} from "./sync-manager.js";
export { HubAuthError, HubBucketError, HubRefusedError, type Transport } from "./transport.js";
export { HttpTransport, type HttpTransportOptions, TransportError } from "./transports/http.js";
export { type LocalHub, MemoryTransport, type Switchboard } from "./transports/memory.js";
export { WebSocketTransport, type WebSocketTransportOptions } from "./transports/websocket.js";

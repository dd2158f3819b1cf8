/**
 * Handshake: what a SyncManager agrees with a hub before it moves changes —
 * the hub's node id, its batch limits, whether it offers live notices, and
 * where its log ends.
 *
 * Contract: `shakeHands` sends one handshake for `buckets` at this
 * client's protocol version and capabilities, and resolves with the hub's
 * terms, or rejects: a hub that refused the version (its 400
 * `ERR_PROTOCOL_VERSION`, or an answer in another version) is a
 * ProtocolError `ERR_PROTOCOL_VERSION`; one of our version that refused all
 * the same a ProtocolError `ERR_HANDSHAKE_REFUSED` with its reason; any other
 * refusal (the token, a bucket) passes through with its own class.
 */
import type { Replica } from "../replica/replica.js";
import { type BatchLimits, CAPABILITIES, PROTOCOL_VERSION, ProtocolError } from "./protocol.js";
import { HubRefusedError, type Transport } from "./transport.js";

export interface HubTerms {
  hubNodeId: string;
  limits: BatchLimits;
  /** The hub offered live notices. */
  live: boolean;
  /** The hub's last sequence number, when it said. */
  head: string | undefined;
}

export async function shakeHands(
  transport: Transport,
  replica: Replica,
  buckets: string[],
): Promise<HubTerms> {
  let answer: Awaited<ReturnType<Transport["handshake"]>>;
  try {
    answer = await transport.handshake({
      nodeId: replica.nodeId,
      protocolVersion: PROTOCOL_VERSION,
      buckets,
      capabilities: [...CAPABILITIES],
    });
  } catch (err) {
    if (err instanceof HubRefusedError && err.code === "ERR_PROTOCOL_VERSION") {
      throw new ProtocolError(`the hub refused the handshake: ${err.message}`, err.code);
    }
    throw err;
  }
  if (answer.protocolVersion !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `the hub refused the handshake: ${answer.reason ?? `it speaks protocol version ${answer.protocolVersion}, this client ${PROTOCOL_VERSION}`}`,
      "ERR_PROTOCOL_VERSION",
    );
  }
  // Our version, refused all the same (a hub of another make): its reason, not a version's code.
  if (!answer.accepted) {
    throw new ProtocolError(
      `the hub refused the handshake: ${answer.reason ?? "it gave no reason"}`,
      "ERR_HANDSHAKE_REFUSED",
    );
  }
  return {
    hubNodeId: answer.hubNodeId,
    limits: answer.limits,
    live: answer.capabilities.includes("live"),
    head: answer.head,
  };
}

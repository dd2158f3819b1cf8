/**
 * MemberRegistry: keeps a Peers registry in step with the mesh members that
 * heartbeats show (see MeshMember).
 *
 * Contract: `seen` records a member in a bucket as up, with its heartbeat as
 * last seen, and answers false when the member was registered here and has
 * since been removed from the registry (`tidewire peers remove`, from any
 * process), so the caller lets it leave the mesh. A write transaction per
 * member and bucket on every heartbeat would be most of a quiet mesh's disk
 * traffic: last_seen_at is written every SEEN_WRITE_MS, and at once when the
 * member is new, in a new bucket or not up. Without a registry every member
 * is simply kept.
 */
import type { Peers } from "../peers/peers.js";

/** How often a live member's last_seen_at is written to the registry. */
export const SEEN_WRITE_MS = 10_000;

export class MemberRegistry {
  private readonly registered = new Set<string>();
  /** When each (member, bucket)'s last_seen_at was last written. */
  private readonly written = new Map<string, number>();

  constructor(private readonly peers: Peers | undefined) {}

  seen(peer: string, bucket: string, heartbeatAt: number): boolean {
    const peers = this.peers;
    if (!peers) return true;
    const known = peers.get(peer);
    if (this.registered.has(peer) && !known) return false;
    const at = Number.isSafeInteger(heartbeatAt) && heartbeatAt > 0 ? heartbeatAt : Date.now();
    const key = `${peer}\u0000${bucket}`;
    const fresh = known?.state === "up" && known.buckets.includes(bucket);
    if (!fresh || at - (this.written.get(key) ?? 0) >= SEEN_WRITE_MS) {
      peers.seen(peer, bucket, at);
      this.written.set(key, at);
    }
    this.registered.add(peer);
    return true;
  }
}

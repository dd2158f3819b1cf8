/**
 * Peers: the registry of replicas this one exchanges changes with, in `tw_peers`.
 *
 * Contract: a peer has an id (its node id when known, else one derived from
 * its address), an optional hub address (http/https URL; a peer seen only
 * through Redis has none), the buckets it syncs, an optional bearer token for
 * its hub, and its liveness: state (up, down, unknown), when it last answered,
 * the round-trip time of that answer and the last error. The token is stored
 * in clear in the database file: whoever can read the file can call that
 * peer's hub with it. Every entry point checks all of its input before it
 * writes, and refuses bad input with an InvalidArgumentError. `remove` also
 * deletes every cursor kept for the peer, under each name it is known by.
 */
import { CursorStore } from "../cursor-store.js";
import { InvalidArgumentError } from "../errors.js";
import { peerRtt, peerUp } from "../metrics.js";
import { checkNodeId, toNodeId } from "../node-id.js";
import { DEFAULT_BUCKET } from "../replica/track.js";
import type { Store } from "../store.js";
import { checkInteger, checkName, checkNumber, checkObject } from "../validate.js";

export type PeerState = "up" | "down" | "unknown";

export interface Peer {
  id: string;
  /** The peer hub's base URL (normalised, no trailing slash), or null. */
  address: string | null;
  /** The node id its hub answered the last handshake with, once one succeeded. */
  nodeId: string | null;
  buckets: string[];
  /** Bearer token for the peer's hub; kept in clear in the database file. */
  token: string | null;
  state: PeerState;
  /** Epoch ms the peer entered its state (null while unknown). */
  stateChangedAt: number | null;
  /** Epoch ms of the last answer (ping) from the peer. */
  lastSeenAt: number | null;
  rttMs: number | null;
  lastError: string | null;
  addedAt: number;
}

/** A peer as shown outside the daemon (CLI, status, dashboard): the token is replaced by whether there is one. */
export type PublicPeer = Omit<Peer, "token"> & { hasToken: boolean };

export function publicPeer({ token, ...rest }: Peer): PublicPeer {
  return { ...rest, hasToken: token !== null };
}

export interface PeerInput {
  /** Derived from `address` when absent (then `address` is required). */
  id?: string;
  /** null forgets the address. */
  address?: string | null;
  /** Replaces the peer's buckets (a new peer's default: ["default"], as SyncManager's). */
  buckets?: string[];
  /** null forgets the token. */
  token?: string | null;
}

const MAX_TOKEN = 4096;
const MAX_ERROR = 1000;

export class Peers {
  private readonly sql: ReturnType<typeof prepare>;

  constructor(private readonly store: Store) {
    this.sql = prepare(store);
  }

  /** A file's peers as shown outside (tokens left out); none for a file from before peers. */
  static listPublic(store: Store): PublicPeer[] {
    return store.hasTable("tw_peers") ? new Peers(store).list().map(publicPeer) : [];
  }

  /** Adds the peer, or updates the fields given of the one with that id; returns it as stored. */
  upsert(input: PeerInput): Peer {
    checkObject("peer", input);
    const address =
      input.address === undefined || input.address === null ? input.address : normalizeAddress(input.address);
    if (input.id === undefined && !address)
      throw new InvalidArgumentError("id", "is required for a peer without an address");
    const id = input.id === undefined ? idFromAddress(address as string) : checkPeerId(input.id);
    const buckets = input.buckets === undefined ? undefined : checkBuckets(input.buckets);
    const token = input.token === undefined || input.token === null ? input.token : checkToken(input.token);
    return this.store.write(() => {
      const before = this.row(id);
      if (address) {
        const holder = this.sql.byAddress.get(address) as { id: string } | undefined;
        if (holder && holder.id !== id) {
          throw new InvalidArgumentError("address", `${address} is already peer ${holder.id}`);
        }
      }
      if (!before) {
        this.sql.insert.run({
          id,
          address: address ?? null,
          buckets: JSON.stringify(buckets ?? [DEFAULT_BUCKET]),
          token: token ?? null,
          now: Date.now(),
        });
      } else {
        const moved = address !== undefined && address !== before.address;
        this.sql.update.run({
          id,
          address: address === undefined ? before.address : address,
          buckets: buckets === undefined ? before.buckets : JSON.stringify(buckets),
          token: token === undefined ? before.token : token,
          // Another address may be another node: what was known of the old one no longer holds.
          moved: moved ? 1 : 0,
        });
      }
      return toPeer(this.row(id)!);
    }, "peers");
  }

  get(id: string): Peer | undefined {
    const row = this.row(checkPeerId(id));
    return row ? toPeer(row) : undefined;
  }

  list(): Peer[] {
    return (this.sql.list.all() as PeerRow[]).map(toPeer);
  }

  /** The peer answered in `rttMs`; false when there is no such peer (it may have been removed). */
  markUp(id: string, rttMs: number, at: number = Date.now()): boolean {
    const peer = checkPeerId(id);
    checkNumber("rttMs", rttMs, 0);
    const when = checkTime(at);
    const changed = this.store.write(
      () => this.sql.up.run({ rttMs, at: when, id: peer }).changes > 0,
      "peers",
    );
    if (changed) {
      peerUp.labels(peer).set(1);
      peerRtt.labels(peer).set(rttMs / 1000);
    }
    return changed;
  }

  /**
   * A member of a mesh bucket showed a sign of life at `at` (its heartbeat in
   * Redis): added if unknown (no address), the bucket joined to its buckets,
   * marked up. No round trip was measured, so rtt is left as it was.
   */
  seen(id: string, bucket: string, at: number = Date.now()): void {
    const peer = checkPeerId(id);
    const b = checkName("bucket", bucket);
    const when = checkTime(at);
    this.store.write(() => this.sql.seen.run({ id: peer, bucket: b, at: when, now: Date.now() }), "peers");
    peerUp.labels(peer).set(1);
  }

  /** The peer did not answer at `at`; `lastSeenAt` keeps the last time it did. False when there is no such peer. */
  markDown(id: string, error: string, at: number = Date.now()): boolean {
    const peer = checkPeerId(id);
    if (typeof error !== "string" || error.trim() === "")
      throw new InvalidArgumentError("error", "must be a non-empty string");
    const when = checkTime(at);
    const changed = this.store.write(
      () => this.sql.down.run({ error: error.slice(0, MAX_ERROR), at: when, id: peer }).changes > 0,
      "peers",
    );
    if (changed) peerUp.labels(peer).set(0);
    return changed;
  }

  /** Records the node id the peer's hub answered a handshake with; false when there is no such peer. */
  noteNodeId(id: string, nodeId: string): boolean {
    const peer = checkPeerId(id);
    const node = checkNodeId("nodeId", nodeId);
    return this.store.write(() => this.sql.nodeId.run(node, peer).changes > 0, "peers");
  }

  /**
   * Forgets the peer and deletes its cursors: those kept under its id, the
   * node id its hub answered with (SyncManager keys cursors by the hub's node
   * id), its address and its address's origin (a transport's `peer`). Uses
   * `cursors` (so its cache forgets them too) or a CursorStore of its own.
   * False when there was no such peer.
   */
  remove(id: string, cursors?: CursorStore): boolean {
    const peer = checkPeerId(id);
    if (cursors !== undefined && !(cursors instanceof CursorStore))
      throw new InvalidArgumentError("cursors", "must be a CursorStore");
    const row = this.row(peer);
    if (!row) return false;
    const store = cursors ?? new CursorStore(this.store, { flushIntervalMs: 0 });
    // Cursors first: a crash in between leaves a peer to remove again, never cursors nobody owns.
    for (const name of cursorNames(toPeer(row))) store.deletePeer(name);
    this.store.write(() => this.sql.remove.run(peer), "peers");
    peerUp.remove(peer);
    peerRtt.remove(peer);
    return true;
  }

  private row(id: string): PeerRow | undefined {
    return this.sql.get.get(id) as PeerRow | undefined;
  }
}

/**
 * Every name a peer's cursors may be kept under: its id, the node id its hub
 * answered with (SyncManager's key), its address and the address's origin
 * (a transport's `peer`).
 */
export function cursorNames(peer: Pick<Peer, "id" | "nodeId" | "address">): string[] {
  const names = new Set([peer.id]);
  if (peer.nodeId) names.add(peer.nodeId);
  if (peer.address) names.add(peer.address).add(new URL(peer.address).origin);
  return [...names];
}

/** The id a peer known only by its address gets: its host, port and path, in node-id characters. */
export function idFromAddress(address: string): string {
  const url = new URL(normalizeAddress(address));
  const raw = `${url.host}${url.pathname === "/" ? "" : url.pathname}`;
  return toNodeId("id", raw);
}

/** A peer id is a node id: 1 to 64 of A-Z a-z 0-9 . _ : - (so never a "/", which job keys rely on). */
export function checkPeerId(id: unknown): string {
  return checkNodeId("id", id);
}

function normalizeAddress(address: unknown): string {
  if (typeof address !== "string" || address.trim() === "")
    throw new InvalidArgumentError("address", "must be a non-empty URL");
  let url: URL;
  try {
    url = new URL(address.trim());
  } catch {
    throw new InvalidArgumentError("address", `is not a URL: ${JSON.stringify(address)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new InvalidArgumentError("address", `must be http: or https:, got ${url.protocol}`);
  if (url.username || url.password)
    throw new InvalidArgumentError("address", "must not carry credentials; give a token instead");
  if (url.search || url.hash) throw new InvalidArgumentError("address", "must not have a query or fragment");
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

function checkBuckets(buckets: unknown): string[] {
  if (!Array.isArray(buckets)) throw new InvalidArgumentError("buckets", "must be an array of bucket names");
  const names = buckets.map((b, i) => checkName(`buckets[${i}]`, b));
  return [...new Set(names)].sort();
}

function checkToken(token: unknown): string {
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN || /\s/.test(token))
    throw new InvalidArgumentError("token", `must be 1 to ${MAX_TOKEN} characters without whitespace`);
  return token;
}

function checkTime(at: unknown): number {
  return checkInteger("at", at, 0);
}

interface PeerRow {
  id: string;
  address: string | null;
  node_id: string | null;
  buckets: string;
  token: string | null;
  state: PeerState;
  state_changed_at: number | null;
  last_seen_at: number | null;
  rtt_ms: number | null;
  last_error: string | null;
  added_at: number;
}

function toPeer(r: PeerRow): Peer {
  return {
    id: r.id,
    address: r.address,
    nodeId: r.node_id,
    buckets: JSON.parse(r.buckets) as string[],
    token: r.token,
    state: r.state,
    stateChangedAt: r.state_changed_at,
    lastSeenAt: r.last_seen_at,
    rttMs: r.rtt_ms,
    lastError: r.last_error,
    addedAt: r.added_at,
  };
}

function prepare(store: Store) {
  const db = store.db;
  return {
    get: db.prepare("SELECT * FROM tw_peers WHERE id = ?"),
    byAddress: db.prepare("SELECT id FROM tw_peers WHERE address = ?"),
    list: db.prepare("SELECT * FROM tw_peers ORDER BY id"),
    insert: db.prepare(
      `INSERT INTO tw_peers (id, address, buckets, token, added_at)
       VALUES (@id, @address, @buckets, @token, @now)`,
    ),
    update: db.prepare(
      `UPDATE tw_peers SET address = @address, buckets = @buckets, token = @token,
         state = CASE WHEN @moved THEN 'unknown' ELSE state END,
         node_id = CASE WHEN @moved THEN NULL ELSE node_id END,
         rtt_ms = CASE WHEN @moved THEN NULL ELSE rtt_ms END,
         state_changed_at = CASE WHEN @moved THEN NULL ELSE state_changed_at END
       WHERE id = @id`,
    ),
    up: db.prepare(
      `UPDATE tw_peers SET state = 'up', rtt_ms = @rttMs, last_seen_at = @at, last_error = NULL,
         state_changed_at = CASE WHEN state = 'up' THEN state_changed_at ELSE @at END
       WHERE id = @id`,
    ),
    down: db.prepare(
      `UPDATE tw_peers SET state = 'down', last_error = @error,
         state_changed_at = CASE WHEN state = 'down' THEN state_changed_at ELSE @at END
       WHERE id = @id`,
    ),
    seen: db.prepare(
      `INSERT INTO tw_peers (id, buckets, added_at, state, state_changed_at, last_seen_at)
       VALUES (@id, json_array(@bucket), @now, 'up', @at, @at)
       ON CONFLICT (id) DO UPDATE SET
         state = 'up', last_error = NULL,
         last_seen_at = max(coalesce(last_seen_at, 0), @at),
         state_changed_at = CASE WHEN state = 'up' THEN state_changed_at ELSE @at END,
         buckets = CASE WHEN EXISTS (SELECT 1 FROM json_each(buckets) WHERE value = @bucket)
                        THEN buckets ELSE json_insert(buckets, '$[#]', @bucket) END`,
    ),
    nodeId: db.prepare("UPDATE tw_peers SET node_id = ? WHERE id = ?"),
    remove: db.prepare("DELETE FROM tw_peers WHERE id = ?"),
  };
}

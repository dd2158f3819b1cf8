/**
 * MeshStatus: what a mesh member reports of itself (`MeshMember.status`).
 *
 * Contract: types only, in a module of their own so that the public types
 * reach none of the modules that name ioredis's (publisher, redis-link):
 * they compile without ioredis, an optional peer dependency, installed.
 */

export type MeshState = "stopped" | "running" | "stopping";

export interface PublishState {
  bucket: string;
  /** The log cursor the last entry published ends at (0 before any). */
  cursor: string;
  /** The last page read found nothing of this replica's own left to publish. */
  idle: boolean;
}

export interface MeshStatus {
  state: MeshState;
  nodeId: string;
  buckets: string[];
  published: PublishState[];
  peers: Array<{ nodeId: string; bucket: string; streamId: string; cursor: string; gap: boolean }>;
  counts: { published: number; received: number; applied: number; gaps: number; refused: number };
  lastError?: string;
}

/**
 * `tidewire/mesh`: MeshMember, which makes a replica a member of a mesh over
 * Redis Streams.
 *
 * Contract: ioredis is an optional peer dependency, loaded when a member
 * first connects by URL (a MissingDependencyError names it when absent); the
 * public types do not name ioredis's, so they compile without it.
 */
export {
  type MeshLogger,
  MeshMember,
  type MeshMemberOptions,
  type MeshState,
  type MeshStatus,
} from "./mesh-member.js";
export type { RedisClient } from "./mesh-options.js";
export type { PublishState } from "./mesh-status.js";

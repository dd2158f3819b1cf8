/**
 * Node ids: the name a replica stamps on its changes (a change's `origin`),
 * and the form of every id that travels beside one: a peer's, a remote
 * target's.
 *
 * Contract: 1 to 64 of A-Z a-z 0-9 . _ : - (never a "/", which job keys and
 * cursor names rely on). The wire schema, the applier's check and the
 * registries all test this one pattern; `toNodeId` makes one from any text.
 */
import { InvalidArgumentError } from "./errors.js";

export const NODE_ID = /^[A-Za-z0-9._:-]{1,64}$/;
export const NODE_ID_RULE = "1 to 64 of A-Z a-z 0-9 . _ : -";

export function isNodeId(v: unknown): v is string {
  return typeof v === "string" && NODE_ID.test(v);
}

export function checkNodeId(argument: string, v: unknown): string {
  if (!isNodeId(v))
    throw new InvalidArgumentError(argument, `must be ${NODE_ID_RULE}, got ${JSON.stringify(v)}`);
  return v;
}

/** `raw` in node-id characters: each run of others one "-", none at either end, at most 64; checked. */
export function toNodeId(argument: string, raw: string): string {
  return checkNodeId(
    argument,
    raw
      .replace(/[^A-Za-z0-9._:-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 64),
  );
}

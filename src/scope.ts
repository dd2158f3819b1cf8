/**
 * Scope: what one credential may do, and the check every admin action makes.
 *
 * Contract: `requireAdmin` throws a HubError (403) unless the scope is an
 * admin's, and changes nothing. Kept out of hub/ because the in-process
 * transport (sync/transports/memory.ts) serves a hub as a scope too, and the
 * hub imports the sync protocol: both import this module instead of each other.
 */
import { HubError } from "./errors.js";

/**
 * What one credential may do: read these buckets ("*": all), write them if
 * `write`, and administer them if `admin` (add a new table to one of them;
 * any admin endpoint or dashboard action to come).
 */
export interface Scope {
  /** Names the credential in logs and rate limits, never the secret itself. */
  id: string;
  buckets: "*" | ReadonlySet<string>;
  write: boolean;
  admin?: boolean;
}

export const FULL_SCOPE: Scope = { id: "insecure", buckets: "*", write: true, admin: true };

/** Throws a 403 naming `what` unless the scope is an admin's: the check every admin action makes. */
export function requireAdmin(scope: Scope, what: string): void {
  if (scope.admin !== true)
    throw new HubError(403, "ERR_ADMIN_REQUIRED", `${what} needs a token with admin access; refused`);
}

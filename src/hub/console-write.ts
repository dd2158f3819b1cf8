/**
 * The checks every console write makes (jobs-routes.ts, conflicts-routes.ts),
 * and the parsing of the whole numbers console routes read from a path or a
 * query.
 *
 * Contract: `writeBody` refuses, in this order and before anything is read, a
 * request whose Origin header is present and is not this hub's own (403
 * ERR_CROSS_ORIGIN; compared by host and port, as a TLS-terminating proxy
 * changes the scheme the hub sees), a token without admin access (403
 * ERR_ADMIN_REQUIRED), and a body that is not a JSON object (400
 * ERR_MALFORMED). The token travels in the Authorization header and the hub
 * reads no cookie, so a browser cannot send one on its own: with the origin
 * check, a page elsewhere cannot drive an operator's browser against the hub.
 */
import type { FastifyRequest } from "fastify";
import { HubError } from "../errors.js";
import { requireAdmin } from "../scope.js";

/** `what`: the action, for the refusal's sentence ("a bulk job action", "restoring conflict 4"). */
export function writeBody(request: FastifyRequest, what: string): Record<string, unknown> {
  const origin = request.headers.origin;
  // By host (name and port), not scheme: behind a proxy that terminates TLS the hub sees http.
  if (origin !== undefined && originHost(origin) !== request.headers.host) {
    throw new HubError(
      403,
      "ERR_CROSS_ORIGIN",
      `requests from ${origin} may not change this hub; only pages served by it (${request.headers.host}) may`,
    );
  }
  requireAdmin(request.scope!, what);
  const body = request.body ?? {};
  if (typeof body !== "object" || Array.isArray(body))
    throw new HubError(400, "ERR_MALFORMED", "the body must be a JSON object");
  return body as Record<string, unknown>;
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null; // "null" (a sandboxed or file: page) or garbage: never the hub's own
  }
}

/** A whole number from a path or query parameter; undefined when absent or empty. */
export function wholeNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  if (!/^\d{1,15}$/.test(text))
    throw new HubError(
      400,
      "ERR_INVALID_ARGUMENT",
      `${name}: must be a whole number, got ${JSON.stringify(text)}`,
    );
  return Number(text);
}

/**
 * `tidewire/hub`: the server side of sync — the Hub that answers pushes and
 * pulls for a replica, the tokens that decide who may do what, and scopes.
 *
 * Contract: loads no backend package and not the HTTP server on import (the
 * daemon, `tidewire/daemon`, serves a Hub over HTTP).
 */
export { FULL_SCOPE, requireAdmin, type Scope } from "../scope.js";
export { Auth, type AuthOptions, resolveAuth } from "./auth.js";
export { Hub, type HubOptions } from "./hub.js";

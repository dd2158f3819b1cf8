/**
 * HubError: a request the hub refuses, with the HTTP status that says why.
 *
 * Contract: `status` is what the route answers; `code` and `message` (one
 * sentence) go into the `{ error: { code, message } }` body.
 */
import { TidewireError } from "../errors.js";

export class HubError extends TidewireError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(message, code);
    this.name = "HubError";
  }
}

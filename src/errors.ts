/**
 * Errors that tidewire raises on purpose. Each carries a stable `code` so callers
 * (and the CLI, which maps them to exit statuses) can tell a usage error from a
 * runtime failure without parsing messages.
 */
export class TidewireError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "TidewireError";
  }
}

/** A caller passed an argument that can never work; nothing was written. */
export class InvalidArgumentError extends TidewireError {
  constructor(
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`, "ERR_INVALID_ARGUMENT");
    this.name = "InvalidArgumentError";
  }
}

/**
 * A move that a state machine (an outbox message's, a job's) does not allow
 * from the current state; nothing was written.
 */
export class IllegalTransitionError<S extends string = string> extends TidewireError {
  constructor(
    readonly id: number,
    readonly from: S,
    readonly to: S,
    reason: string,
    noun = "message",
  ) {
    super(`${noun} ${id} is ${from} and cannot move to ${to}: ${reason}`, "ERR_ILLEGAL_TRANSITION");
    this.name = "IllegalTransitionError";
  }
}

export class StoreError extends TidewireError {
  constructor(message: string, code = "ERR_STORE") {
    super(message, code);
    this.name = "StoreError";
  }
}

/**
 * A request the hub refuses, with the HTTP status that says why: `status` is
 * what the route answers; `code` and `message` (one sentence) go into the
 * `{ error: { code, message } }` body. It lives here, not in hub/, because the
 * pin routes and the in-process transport recognise it too.
 */
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

/**
 * A backend package (pg, @libsql/client, ioredis, ws) is not installed: they load on first use,
 * so only the feature that needs one fails, and the message names what to install.
 */
export class MissingDependencyError extends TidewireError {
  constructor(
    readonly packageName: string,
    feature: string,
  ) {
    super(
      `${feature} needs the package '${packageName}', which is not installed: run npm install ${packageName}`,
      "ERR_MISSING_DEPENDENCY",
    );
    this.name = "MissingDependencyError";
  }
}

/**
 * The errors of pins. A mismatch and a pin over the size limit are the
 * sender's fault (the hub answers 422 / 413); a missing pin is a 404.
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";

/** The bytes received do not hash to the hash they were sent as; nothing was stored. */
export class PinMismatchError extends TidewireError {
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `pin ${expected}: the bytes received hash to ${actual}; refused, nothing stored`,
      "ERR_PIN_MISMATCH",
    );
    this.name = "PinMismatchError";
  }
}

/** A pin grew past the store's size limit while it was written; nothing was stored. */
export class PinTooLargeError extends TidewireError {
  constructor(readonly maxBytes: number) {
    super(`a pin may hold at most ${maxBytes} bytes; refused, nothing stored`, "ERR_PIN_TOO_LARGE");
    this.name = "PinTooLargeError";
  }
}

export class PinNotFoundError extends TidewireError {
  constructor(readonly hash: string) {
    super(`no pin ${hash} in this store`, "ERR_PIN_NOT_FOUND");
    this.name = "PinNotFoundError";
  }
}

/** A pin's name: sha256 as 64 lowercase hex digits. */
export const PIN_HASH = /^[0-9a-f]{64}$/;

export function isPinHash(value: unknown): value is string {
  return typeof value === "string" && PIN_HASH.test(value);
}

export function checkPinHash(argument: string, value: unknown): string {
  if (!isPinHash(value)) {
    const shown = typeof value === "string" ? JSON.stringify(value.slice(0, 80)) : String(value);
    throw new InvalidArgumentError(
      argument,
      `must be a sha256 hash as 64 lowercase hex digits, got ${shown}`,
    );
  }
  return value;
}

/**
 * Thrown values: what a handler threw, as the message of a failed attempt.
 *
 * Contract: `describeThrown` never throws, whatever it is given.
 */

/** Throw this from a handler to fail the job at once, with no retry. */
export class UnrecoverableError extends Error {
  override name = "UnrecoverableError";
}

/**
 * What a handler threw, as a failed attempt's message. A handler may throw
 * anything: an object with no prototype, one whose toString or message getter
 * throws, a Symbol, undefined, a revoked Proxy. Reading it must never throw
 * in turn, or the worker's own promise would reject with nobody listening.
 */
export function describeThrown(err: unknown): { message: string; unrecoverable: boolean } {
  let unrecoverable = false;
  try {
    unrecoverable = err instanceof UnrecoverableError;
    if (err instanceof Error) {
      const message = attempt(() => err.message);
      if (typeof message === "string" && message !== "") return { message, unrecoverable };
      const name = attempt(() => err.name);
      if (typeof name === "string" && name !== "") return { message: name, unrecoverable };
    }
  } catch {
    // instanceof itself throws for a Proxy whose getPrototypeOf trap throws.
  }
  if (typeof err === "string")
    return { message: err === "" ? "handler threw an empty string" : err, unrecoverable };
  return { message: `handler threw ${describeValue(err)}`, unrecoverable };
}

function describeValue(v: unknown): string {
  switch (typeof v) {
    case "undefined":
      return "undefined";
    case "symbol":
      return attempt(() => v.toString()) ?? "a symbol";
    case "function":
      return "a function";
    case "bigint":
    case "number":
    case "boolean":
      return String(v);
    default:
      break;
  }
  if (v === null) return "null";
  // Its own words first (an object with a useful toString), then its JSON, then its kind.
  const text = attempt(() => String(v));
  if (typeof text === "string" && text !== "" && !text.startsWith("[object ")) return clip(text);
  const json = attempt(() => JSON.stringify(v));
  if (typeof json === "string" && json !== "{}") return `an object ${clip(json)}`;
  const kind = attempt(() => Object.prototype.toString.call(v).slice(8, -1));
  return kind && kind !== "Object" ? `an object (${kind})` : "an object that is not an Error";
}

function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function clip(text: string): string {
  return text.length > 500 ? `${text.slice(0, 499)}…` : text;
}

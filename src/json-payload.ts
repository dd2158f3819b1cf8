/**
 * JSON payloads as stored by the queue and the outbox: the caller's value as
 * JSON text, refused (naming the argument and the member) when JSON would not
 * give the same value back.
 *
 * Contract: `encodePayload` returns the text and the value a returned record
 * carries; undefined is stored as null. NaN, Infinity, BigInt, functions,
 * symbols, undefined array members, cycles and non-plain objects (Map, Set,
 * class instances) throw InvalidArgumentError, since a queue that stored them
 * would run a job with different input than was given.
 */
import { InvalidArgumentError } from "./errors.js";

/**
 * JSON.stringify silently turns NaN into null and drops undefined members;
 * a queue that did that would run a job with different input than was given.
 */
function strictReplacer(this: unknown, key: string, value: unknown): unknown {
  switch (typeof value) {
    case "number":
      if (!Number.isFinite(value)) throw new Error(`${describeKey(key)} is ${value}`);
      return value;
    case "bigint":
      throw new Error(`${describeKey(key)} is a BigInt`);
    case "function":
    case "symbol":
      throw new Error(`${describeKey(key)} is a ${typeof value}`);
    case "undefined":
      if (Array.isArray(this)) throw new Error(`${describeKey(key)} is undefined`);
      return value;
    case "object": {
      // toJSON has run already (a Date is its ISO string by now). What is left must be
      // plain: JSON would store a Map, a Set or a class instance as {} or a bag of fields.
      const kind = foreignKind(value);
      if (kind !== null)
        throw new Error(
          `${describeKey(key)} is ${kind}, which JSON cannot keep; convert it to a plain object or array`,
        );
      return value;
    }
    default:
      return value;
  }
}

const BOXED = new Set<unknown>([Number.prototype, String.prototype, Boolean.prototype]);

/** null for a value JSON keeps as it is (plain object, array, boxed primitive), else what it is. */
function foreignKind(value: object | null): string | null {
  if (value === null || Array.isArray(value)) return null;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null || BOXED.has(proto)) return null;
  const tag = Object.prototype.toString.call(value).slice(8, -1);
  const name = typeof proto?.constructor === "function" ? proto.constructor.name : "";
  return `a ${tag !== "Object" ? tag : name || "class instance"}`;
}

function describeKey(key: string): string {
  return key === "" ? "the value" : `member "${key}"`;
}

export function serializePayload(argument: string, payload: unknown): string {
  return encodePayload(argument, payload)[0];
}

/**
 * The payload's JSON text, and the value a returned Job carries: the payload
 * itself when JSON keeps it as it is, else the text parsed back (a Date becomes
 * its ISO string, as every later read of the job will see it).
 */
export function encodePayload(argument: string, payload: unknown): [text: string, value: unknown] {
  if (payload === undefined) return ["null", null];
  // Fast path: a plain walk proves the value is clean, then V8's native stringify runs
  // without a replacer (which would take it off its fast path, ~2x slower).
  if (isPlainJson(payload, 0)) {
    try {
      return [JSON.stringify(payload), payload];
    } catch (err) {
      throw new InvalidArgumentError(argument, `is not JSON-serialisable: ${(err as Error).message}`);
    }
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(payload, strictReplacer);
  } catch (err) {
    const message = (err as Error).message;
    // V8's words for a cycle run to several lines of path; one sentence says it.
    const why = /circular/i.test(message) ? "it contains a cycle (an object that contains itself)" : message;
    throw new InvalidArgumentError(argument, `is not JSON-serialisable: ${why}`);
  }
  if (text === undefined) throw new InvalidArgumentError(argument, "is not JSON-serialisable");
  return [text, JSON.parse(text)];
}

/** True when JSON.stringify would keep every value as given; false means "look closer". */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "number":
      return Number.isFinite(value);
    case "string":
    case "boolean":
      return true;
    case "object": {
      if (value === null) return true;
      if (depth > 64) return false;
      if (Array.isArray(value)) {
        for (const item of value) if (item === undefined || !isPlainJson(item, depth + 1)) return false;
        return true;
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === "function") return false;
      // A Map, Set or class instance does not come back from JSON as it went in.
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        const item = (value as Record<string, unknown>)[key];
        if (item !== undefined && !isPlainJson(item, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

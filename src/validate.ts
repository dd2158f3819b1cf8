/**
 * Argument checks for every public call in tidewire: the one place that says
 * what a name, a count, a duration, a flag or an option bag must be.
 *
 * Contract: each check returns the value it accepted (typed) or throws an
 * InvalidArgumentError naming the argument and what it got, so a call checks
 * all of its input before it writes anything. Checks of one module's own
 * vocabulary (job states, sync directions) live beside it and build on these.
 */
import { InvalidArgumentError } from "./errors.js";

export function checkName(argument: string, value: unknown): string {
  if (typeof value !== "string" || value.trim().length === 0) {
    throw new InvalidArgumentError(argument, "must be a non-empty string");
  }
  if (value.length > 200) throw new InvalidArgumentError(argument, "must be at most 200 characters");
  return value;
}

export function checkInteger(argument: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(argument, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** A finite number at least `min` (not necessarily whole). */
export function checkNumber(argument: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(argument, `must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** A finite number above 0: an interval a loop waits, where 0 would spin. */
export function checkPositive(argument: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(argument, `must be a positive number, got ${String(value)}`);
  }
  return value;
}

export function checkDuration(argument: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, `must be a finite number of ms >= 0, got ${String(value)}`);
  }
  return value;
}

/** A time limit: a whole number of ms, at least 1, at most what setTimeout can wait (~24.8 days). */
export function checkTimeout(argument: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new InvalidArgumentError(
      argument,
      `must be a whole number of ms from 1 to ${2 ** 31 - 1}, got ${String(value)}`,
    );
  }
  return value;
}

/** `value` if it is one of `allowed`; the error lists them. */
export function checkOneOf<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new InvalidArgumentError(
      argument,
      `must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
}

export function checkBoolean(argument: string, value: unknown): boolean {
  if (typeof value !== "boolean")
    throw new InvalidArgumentError(argument, `must be a boolean, got ${String(value)}`);
  return value;
}

/** An optional boolean option: absent is false. */
export function checkFlag(argument: string, value: unknown): boolean {
  return value === undefined ? false : checkBoolean(argument, value);
}

/** An option bag (or any other object argument): not null, not a primitive. */
export function checkObject<T extends object>(argument: string, value: T): T {
  if (value === null || typeof value !== "object")
    throw new InvalidArgumentError(argument, "must be an object");
  return value;
}

/** A point in time, as a Date or epoch ms: the epoch ms, rounded to a whole ms. */
export function checkTime(argument: string, value: unknown): number {
  const t = value instanceof Date ? value.getTime() : value;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0)
    throw new InvalidArgumentError(argument, `must be a Date or epoch ms, got ${String(value)}`);
  return Math.round(t);
}

/**
 * A job's retry backoff as options: the defaults, a job's own options layered
 * over its queue's, and their checks. The delay itself is src/backoff.ts's
 * `exponentialDelay`, after attempt n waiting n - 1 retries' worth.
 */
import { InvalidArgumentError } from "../errors.js";
import type { BackoffOptions } from "./types.js";

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  baseMs: 1000,
  maxMs: 3_600_000,
  factor: 2,
  jitter: 0.2,
};

export function resolveBackoff(
  ...layers: Array<BackoffOptions | null | undefined>
): Required<BackoffOptions> {
  const out = { ...DEFAULT_BACKOFF };
  for (const layer of layers) if (layer) Object.assign(out, stripUndefined(layer));
  return out;
}

export function validateBackoff(argument: string, b: BackoffOptions | undefined): void {
  if (b === undefined) return;
  if (b === null || typeof b !== "object") throw new InvalidArgumentError(argument, "must be an object");
  const check = (k: keyof BackoffOptions, ok: (v: number) => boolean, rule: string) => {
    const v = b[k];
    if (v !== undefined && (typeof v !== "number" || !ok(v))) {
      throw new InvalidArgumentError(`${argument}.${k}`, `must be ${rule}, got ${String(v)}`);
    }
  };
  check("baseMs", (v) => Number.isFinite(v) && v >= 0, "a non-negative number");
  check("maxMs", (v) => Number.isFinite(v) && v >= 0, "a non-negative number");
  check("factor", (v) => Number.isFinite(v) && v >= 1, "a number >= 1");
  check("jitter", (v) => v >= 0 && v <= 1, "a number from 0 to 1");
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

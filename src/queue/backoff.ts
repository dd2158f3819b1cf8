/**
 * Retry delays: exponential, capped, with jitter so that jobs that failed
 * together do not retry together.
 */
import { InvalidArgumentError } from "../errors.js";
import type { BackoffOptions } from "./types.js";

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  baseMs: 1000,
  maxMs: 3_600_000,
  factor: 2,
  jitter: 0.2,
};

/** Delay before the retry that follows failed attempt number `attempt` (1-based). */
export function backoffDelay(
  attempt: number,
  options: Required<BackoffOptions>,
  random = Math.random,
): number {
  const raw = Math.min(options.maxMs, options.baseMs * options.factor ** Math.max(0, attempt - 1));
  const spread = raw * options.jitter;
  return Math.max(0, Math.round(raw - spread + random() * 2 * spread));
}

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

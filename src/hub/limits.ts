/**
 * Limits: the hub's counters of things that must stay bounded whatever
 * clients send: failed auths per address, WebSocket upgrades per token, live
 * sockets per token and in total.
 *
 * Contract: a `WindowCounter` counts hits per key in fixed windows of
 * `windowMs`; `hit` counts one and `blocked` says, without counting, how
 * long a key that went over `max` must still wait (0: it may go on). Its
 * memory is bounded: the counts are dropped at each new window, and past
 * `maxKeys` keys in one window a new key is not tracked (it may go on),
 * so a flood of made-up addresses cannot grow it. `liveCaps` gives the
 * default caps on live sockets: the total is also held under half the
 * process's open-file limit, so sockets cannot exhaust the descriptors
 * /healthz, a push or SQLite need.
 */
import { readFileSync } from "node:fs";
import { HubError } from "../errors.js";

/** A refusal that will pass later: the response carries `Retry-After: retryAfterSeconds`. */
export class RetryLaterError extends HubError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(status, code, message);
    this.name = "RetryLaterError";
  }
}

/** An address that failed auth too often this window: 429 whatever it sends now, the right token included. */
export function tooManyFailures(waitMs: number): RetryLaterError {
  return new RetryLaterError(
    429,
    "ERR_TOO_MANY_AUTH_FAILURES",
    "too many requests with a wrong or missing token from this address; retry later",
    Math.max(1, Math.ceil(waitMs / 1000)),
  );
}

export class WindowCounter {
  private counts = new Map<string, number>();
  private windowEnds = 0;

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Counts a hit; returns ms until the window ends when `key` is now over `max`, else 0. */
  hit(key: string): number {
    const now = this.roll();
    const n = (this.counts.get(key) ?? 0) + 1;
    if (!this.counts.has(key) && this.counts.size >= this.maxKeys) return 0;
    this.counts.set(key, n);
    return n > this.max ? this.windowEnds - now : 0;
  }

  /** How long `key` must still wait, ms, having used up its `max` hits in this window (0: not blocked). */
  blocked(key: string): number {
    const now = this.roll();
    return (this.counts.get(key) ?? 0) >= this.max ? this.windowEnds - now : 0;
  }

  private roll(): number {
    const now = Date.now();
    if (now >= this.windowEnds) {
      this.counts.clear();
      this.windowEnds = now + this.windowMs;
    }
    return now;
  }
}

export const DEFAULT_MAX_LIVE = 1_000;
export const DEFAULT_MAX_LIVE_PER_TOKEN = 100;
export const DEFAULT_AUTH_FAILURES_PER_MINUTE = 60;

/** The open-file soft limit of this process (Linux), or null when it cannot be read. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The caps on live sockets: the given ones, or the defaults, the total under half the open-file limit. */
export function liveCaps(given: { maxLive?: number; maxLivePerToken?: number } = {}) {
  const files = openFileLimit();
  const fit =
    files === null ? DEFAULT_MAX_LIVE : Math.max(1, Math.min(DEFAULT_MAX_LIVE, Math.floor(files / 2)));
  return { total: given.maxLive ?? fit, perToken: given.maxLivePerToken ?? DEFAULT_MAX_LIVE_PER_TOKEN };
}

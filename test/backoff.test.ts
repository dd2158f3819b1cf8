import { describe, expect, it } from "vitest";
import { exponentialDelay } from "../src/backoff.js";

describe("exponentialDelay", () => {
  it("doubles from baseMs by default, up to maxMs, with no jitter unless asked", () => {
    const curve = { baseMs: 250, maxMs: 10_000 };
    expect([0, 1, 2, 3, 4, 5, 6, 60, 5000].map((n) => exponentialDelay(n, curve))).toEqual([
      250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000,
    ]);
    expect(exponentialDelay(3, { baseMs: 100 })).toBe(800);
    expect(exponentialDelay(-1, { baseMs: 100 })).toBe(100);
  });

  it("spreads by at most ± jitter around the capped wait, never below 0", () => {
    const curve = { baseMs: 1000, maxMs: 60_000, factor: 3, jitter: 0.2 };
    expect(exponentialDelay(2, curve, () => 0)).toBe(7200);
    expect(exponentialDelay(2, curve, () => 0.5)).toBe(9000);
    expect(exponentialDelay(2, curve, () => 1)).toBe(10_800);
    expect(exponentialDelay(10, curve, () => 1)).toBe(72_000);
    expect(exponentialDelay(1, { baseMs: 10, jitter: 1 }, () => 0)).toBe(0);
  });

  it("stays 0 for a base of 0 however many retries (never NaN)", () => {
    expect(exponentialDelay(5000, { baseMs: 0, maxMs: 100 })).toBe(0);
  });
});

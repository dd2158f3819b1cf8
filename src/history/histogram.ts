/**
 * Histogram: the fixed log-bucket histogram of durations (ms) that every
 * per-minute latency rollup keeps.
 *
 * Contract: bucket 0 holds values in [0, MIN_MS]; bucket i >= 1 holds values
 * in (MIN_MS·R^(i-1), MIN_MS·R^i] with R = 2^(1/8); values past the last
 * bucket are counted in it. The buckets are the same for every minute, series
 * and process, so merging histograms (two flushes of one minute, the minutes
 * of a day, the labels of a series) adds counts bucket by bucket and loses
 * nothing: a percentile read from merged minutes is as good as one read from
 * a single minute. A quantile q is the geometric middle of the bucket holding
 * the value of rank ceil(q·count), clamped into [min, max] of the values seen:
 * within RELATIVE_ERROR (sqrt(R) - 1, 4.4%) of that value when it is above
 * MIN_MS, within MIN_MS / 2 below it. Counts, sums and extremes are exact.
 */

/** The smallest duration told apart from zero: 10 µs. */
export const MIN_MS = 0.01;
const STEPS_PER_DOUBLING = 8;
export const RATIO = 2 ** (1 / STEPS_PER_DOUBLING);
/** MIN_MS·R^MAX_BUCKET is about 5.6 years: no duration a queue or a sync measures goes past it. */
export const MAX_BUCKET = 8 * 44;
export const RELATIVE_ERROR = Math.sqrt(RATIO) - 1;

export interface Histogram {
  count: number;
  sum: number;
  min: number;
  max: number;
  /** Bucket index -> values counted in it; only buckets that counted something. */
  buckets: Map<number, number>;
}

export function emptyHistogram(): Histogram {
  return {
    count: 0,
    sum: 0,
    min: Number.POSITIVE_INFINITY,
    max: Number.NEGATIVE_INFINITY,
    buckets: new Map(),
  };
}

export function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  return Math.min(MAX_BUCKET, Math.ceil(Math.log2(ms / MIN_MS) * STEPS_PER_DOUBLING));
}

/** Counts one duration; a negative or non-finite one (a clock that stepped back) counts as 0. */
export function observe(h: Histogram, ms: number): void {
  const v = Number.isFinite(ms) && ms > 0 ? ms : 0;
  h.count++;
  h.sum += v;
  if (v < h.min) h.min = v;
  if (v > h.max) h.max = v;
  const i = bucketOf(v);
  h.buckets.set(i, (h.buckets.get(i) ?? 0) + 1);
}

/** Adds `from` into `into`. */
export function merge(into: Histogram, from: Histogram): Histogram {
  if (from.count === 0) return into;
  into.count += from.count;
  into.sum += from.sum;
  if (from.min < into.min) into.min = from.min;
  if (from.max > into.max) into.max = from.max;
  for (const [i, n] of from.buckets) into.buckets.set(i, (into.buckets.get(i) ?? 0) + n);
  return into;
}

/** The value of rank ceil(q·count), 0 < q <= 1, as the contract bounds it; null for an empty histogram. */
export function quantile(h: Histogram, q: number): number | null {
  if (h.count === 0) return null;
  const rank = Math.max(1, Math.ceil(q * h.count));
  const order = [...h.buckets.keys()].sort((a, b) => a - b);
  let seen = 0;
  let bucket = order[order.length - 1]!;
  for (const i of order) {
    seen += h.buckets.get(i)!;
    if (seen >= rank) {
      bucket = i;
      break;
    }
  }
  const middle = bucket === 0 ? MIN_MS / 2 : MIN_MS * RATIO ** (bucket - 0.5);
  return Math.min(h.max, Math.max(h.min, middle));
}

/** The buckets as stored: a JSON array of index, count pairs, flat, in index order. */
export function encodeBuckets(h: Histogram): string {
  const flat: number[] = [];
  for (const i of [...h.buckets.keys()].sort((a, b) => a - b)) flat.push(i, h.buckets.get(i)!);
  return JSON.stringify(flat);
}

/** A stored row's histogram (`hist` as encodeBuckets wrote it). */
export function decode(row: {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  hist: string;
}): Histogram {
  const flat = JSON.parse(row.hist) as number[];
  const buckets = new Map<number, number>();
  for (let k = 0; k + 1 < flat.length; k += 2) buckets.set(flat[k]!, flat[k + 1]!);
  const h = emptyHistogram();
  return { ...h, count: row.count, sum: row.sum, min: row.min ?? h.min, max: row.max ?? h.max, buckets };
}

/**
 * History query: one series over the last hour, day, week or 30 days, shaped
 * for a chart.
 *
 * Contract: `historyOf` checks its input (a known series, a range of RANGES,
 * a label of at most 200 characters) and throws InvalidArgumentError naming
 * what is wrong; it only reads. The answer has one x value per period (a
 * minute for 1h and 24h, an hour for 7d and 30d: epoch ms of its start,
 * oldest first, the current one last) and `lines` of the same length: for
 * a counted series, one line per label (the MAX_LINES busiest, the rest
 * summed as "other"), 0 where nothing was counted; for a latency series, the p50, p95 and p99 of every label's durations merged per
 * period, null where none were observed, and `count` per period. `summary`
 * is the whole range at once: percentiles of the merged histograms (see
 * histogram.ts for their error), not an average of periods.
 */
import { InvalidArgumentError } from "../errors.js";
import { emptyHistogram, type Histogram, merge, quantile, RELATIVE_ERROR } from "./histogram.js";
import { SERIES, SERIES_NAMES, type SeriesKind, type SeriesName } from "./recorder.js";
import { HOUR_MS, MINUTE_MS, periodOf, type Rollups, type Step } from "./rollups.js";

/** Each range: how many periods of which step; past a day, the hour rows. */
export const RANGES = {
  "1h": { n: 60, step: MINUTE_MS },
  "24h": { n: 1440, step: MINUTE_MS },
  "7d": { n: 168, step: HOUR_MS },
  "30d": { n: 720, step: HOUR_MS },
} as const satisfies Record<string, { n: number; step: Step }>;
const RANGE_NAMES = Object.keys(RANGES).join(", ");
export type Range = keyof typeof RANGES;
/** Lines of a counted series drawn one by one; more would not be told apart on a chart. */
export const MAX_LINES = 8;
const QUANTILES = [
  ["p50", 0.5],
  ["p95", 0.95],
  ["p99", 0.99],
] as const;

export interface HistoryLine {
  label: string;
  values: Array<number | null>;
}

export interface HistoryAnswer {
  series: SeriesName;
  kind: SeriesKind;
  title: string;
  /** What a counted series' lines are, or which labels a latency series merged. */
  labelledBy: string;
  range: Range;
  stepMs: number;
  /** Epoch ms of each period's start, oldest first. */
  times: number[];
  lines: HistoryLine[];
  /** Observations per minute (a latency series), or events per minute summed over labels. */
  count: number[];
  /** The labels seen in the range, busiest first. */
  labels: string[];
  summary: { count: number; p50: number | null; p95: number | null; p99: number | null; max: number | null };
  /** The percentiles' bound, relative to the true value (see histogram.ts). */
  relativeError: number;
}

export interface HistoryQuery {
  series?: unknown;
  range?: unknown;
  label?: unknown;
}

export function historyOf(rollups: Rollups, query: HistoryQuery, now = Date.now()): HistoryAnswer {
  const series = query.series;
  if (typeof series !== "string" || !Object.hasOwn(SERIES, series))
    throw new InvalidArgumentError("series", `must be one of ${SERIES_NAMES.join(", ")}`);
  const range = query.range ?? "1h";
  if (typeof range !== "string" || !Object.hasOwn(RANGES, range))
    throw new InvalidArgumentError("range", `must be one of ${RANGE_NAMES}, got ${JSON.stringify(range)}`);
  const label = query.label === "" ? undefined : query.label;
  if (label !== undefined && (typeof label !== "string" || label.length > 200))
    throw new InvalidArgumentError("label", "must be a job type, a peer or a side of at most 200 characters");
  const spec = SERIES[series as SeriesName];
  const { n, step } = RANGES[range as Range];
  const first = periodOf(now, step) - (n - 1) * step;
  const times = Array.from({ length: n }, (_, i) => first + i * step);
  const rows = rollups.read(series, first, first + n * step, label, step);
  const at = (start: number) => (start - first) / step;
  const count = new Array<number>(n).fill(0);
  const perLabel = new Map<string, number>();
  for (const r of rows) {
    count[at(r.at)]! += r.count;
    perLabel.set(r.label, (perLabel.get(r.label) ?? 0) + r.count);
  }
  const labels = [...perLabel.keys()].sort((a, b) => perLabel.get(b)! - perLabel.get(a)! || (a < b ? -1 : 1));
  const base = {
    series: series as SeriesName,
    kind: spec.kind,
    title: spec.title,
    labelledBy: spec.label,
    range: range as Range,
    stepMs: step,
    times,
    count,
    labels,
    relativeError: RELATIVE_ERROR,
  };
  if (spec.kind === "count") {
    const drawn = labels.slice(0, labels.length > MAX_LINES ? MAX_LINES - 1 : MAX_LINES);
    const index = new Map(drawn.map((l, i) => [l, i]));
    const lines: HistoryLine[] = drawn.map((l) => ({ label: l, values: new Array(n).fill(0) }));
    if (drawn.length < labels.length) lines.push({ label: "other", values: new Array(n).fill(0) });
    for (const r of rows) {
      const line = lines[index.get(r.label) ?? lines.length - 1]!;
      (line.values[at(r.at)] as number) += r.count;
    }
    const total = count.reduce((a, b) => a + b, 0);
    return { ...base, lines, summary: { count: total, p50: null, p95: null, p99: null, max: null } };
  }
  const perPeriod: Histogram[] = times.map(() => emptyHistogram());
  const whole = emptyHistogram();
  for (const r of rows) {
    if (!r.hist) continue;
    merge(perPeriod[at(r.at)]!, r.hist);
    merge(whole, r.hist);
  }
  const lines = QUANTILES.map(([name, q]) => ({ label: name, values: perPeriod.map((h) => quantile(h, q)) }));
  return {
    ...base,
    lines,
    summary: {
      count: whole.count,
      p50: quantile(whole, 0.5),
      p95: quantile(whole, 0.95),
      p99: quantile(whole, 0.99),
      max: whole.count === 0 ? null : whole.max,
    },
  };
}

// The dashboard's History view: one chart per series of GET /v1/history
// (jobs completed and failed by type, job wait and run time percentiles,
// changes pushed and pulled, sync cycle time) over the last hour or day (per
// minute) or the last 7 or 30 days (per hour), drawn with uPlot, which the hub serves from its own node_modules
// (global `uPlot`, loaded before this module). uPlot styles its elements
// through the CSSOM (element.style), which the page's CSP allows without
// 'unsafe-inline'. Labels (job types, peers) reach the page only as text:
// uPlot writes legend labels with textContent. Each chart's figure says what
// it drew in data-total and data-points, so tests need not read pixels to
// know. A hidden view or tab asks nothing of the hub.

const KEY = "tidewire.token";
const REFRESH_MS = 30_000;
const SERIES = [
  "jobs.completed",
  "jobs.failed",
  "jobs.wait",
  "jobs.run",
  "changes.pushed",
  "changes.pulled",
  "sync.cycle",
];
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#6b7280"];
const COUNT_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];
const RANGE_WORDS = {
  "1h": "the last hour",
  "24h": "the last day",
  "7d": "the last 7 days",
  "30d": "the last 30 days",
};
const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en");

const view = { range: "1h", visible: false, timer: null, charts: new Map(), loading: false };

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0";
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 1000) return `${v.toPrecision(3)} ms`;
  return `${(v / 1000).toPrecision(3)} s`;
}

async function fetchSeries(series) {
  const token = sessionStorage.getItem(KEY);
  const params = new URLSearchParams({ series, range: view.range });
  try {
    const res = await fetch(`/v1/history?${params}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      cache: "no-store",
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) return { error: body.error?.message ?? `the hub answered ${res.status}` };
    return body;
  } catch (err) {
    return { error: `cannot reach the hub: ${err.message}` };
  }
}

/** The figure of one series, made once: caption, plot area, note. */
function figureOf(series) {
  let chart = view.charts.get(series);
  if (chart) return chart;
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.series = series;
  const caption = document.createElement("figcaption");
  const plot = document.createElement("div");
  plot.className = "plot";
  const note = document.createElement("p");
  note.className = "chart-note";
  figure.append(caption, plot, note);
  $("charts").append(figure);
  chart = { figure, caption, plot, note, uplot: null, shape: "" };
  view.charts.set(series, chart);
  return chart;
}

function describe(answer) {
  const s = answer.summary;
  const when = RANGE_WORDS[answer.range];
  if (s.count === 0) return `nothing recorded in ${when}`;
  if (answer.kind === "count") {
    const by = answer.labels.length > 1 ? ` over ${answer.labels.length} ${answer.labelledBy}s` : "";
    return `${number.format(s.count)} in ${when}${by}`;
  }
  const err = Math.round(answer.relativeError * 1000) / 10;
  return `${when}: p50 ${ms(s.p50)} · p95 ${ms(s.p95)} · p99 ${ms(s.p99)} · max ${ms(s.max)} over ${number.format(s.count)} (percentiles ±${err}%)`;
}

function draw(chart, answer) {
  const xs = answer.times.map((t) => t / 1000);
  const data = [xs, ...answer.lines.map((l) => l.values)];
  const isolated = answer.lines.map((l) =>
    l.values.some((v, i) => v !== null && l.values[i - 1] == null && l.values[i + 1] == null),
  );
  const shape = `${answer.range}|${answer.lines.map((l, i) => `${l.label}:${isolated[i]}`).join("\u0000")}`;
  const width = Math.max(280, chart.plot.clientWidth);
  if (chart.uplot && chart.shape === shape) {
    chart.uplot.setData(data);
  } else {
    chart.uplot?.destroy();
    const css = getComputedStyle(document.documentElement);
    const ink = css.getPropertyValue("--muted").trim() || "#5d6678";
    const grid = css.getPropertyValue("--line").trim() || "#dde1e8";
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const latency = answer.kind === "latency";
    const unit = latency ? (_u, v) => ms(v) : (_u, v) => number.format(v);

    chart.uplot = new uPlot(
      {
        width,
        height: 200,
        series: [
          { label: "time" },
          ...answer.lines.map((l, i) => ({
            label: l.label,
            stroke: COLORS[i % COLORS.length],
            width: 1.5,
            value: unit,
            // A minute with no observation is a gap, not a zero: a minute between gaps shows as a dot.
            points: { show: isolated[i], size: 4 },
          })),
        ],
        axes: [
          axis,
          {
            ...axis,
            size: 64,
            values: (u, vals) => vals.map((v) => unit(u, v)),
            // Counts are whole: no tick at 0.5.
            ...(latency ? {} : { incrs: COUNT_TICKS }),
          },
        ],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(max, answer.kind === "count" ? 1 : 0.01)] } },
      },
      data,
      chart.plot,
    );
    chart.shape = shape;
  }
  const per = answer.stepMs === 60_000 ? "minute" : "hour";
  chart.caption.textContent = answer.kind === "count" ? `${answer.title} per ${per}` : answer.title;
  chart.note.textContent = describe(answer);
  chart.note.className = "chart-note";
  chart.figure.dataset.total = String(answer.summary.count);
  chart.figure.dataset.points = String(
    answer.lines.reduce((n, l) => n + l.values.filter((v) => v !== null && v > 0).length, 0),
  );
  chart.figure.dataset.range = answer.range;
  chart.figure.dataset.state = "drawn";
}

async function load() {
  if (view.loading) return;
  view.loading = true;
  try {
    const answers = await Promise.all(SERIES.map(fetchSeries));
    const failed = answers.find((a) => a.error);
    $("history-status").textContent = failed
      ? failed.error
      : `per ${view.range === "1h" || view.range === "24h" ? "minute" : "hour"}, ${RANGE_WORDS[view.range]}; updated ${new Date().toLocaleTimeString()}`;
    $("history-status").className = `note ${failed ? "error" : "ok"}`;
    answers.forEach((answer, i) => {
      const chart = figureOf(SERIES[i]);
      if (answer.error) {
        chart.caption.textContent = SERIES[i];
        chart.note.textContent = answer.error;
        chart.note.className = "chart-note error";
        chart.figure.dataset.state = "error";
        return;
      }
      draw(chart, answer);
    });
  } finally {
    view.loading = false;
  }
  schedule();
}

function schedule() {
  clearTimeout(view.timer);
  view.timer = view.visible && !document.hidden ? setTimeout(load, REFRESH_MS) : null;
}

function setVisible(visible) {
  view.visible = visible;
  if (visible) load();
  else schedule();
}

function setRange(range) {
  view.range = range;
  for (const button of document.querySelectorAll("#history-range button"))
    button.setAttribute("aria-pressed", String(button.dataset.range === range));
  load();
}

document.addEventListener("tidewire:view", (e) => setVisible(e.detail === "history"));
for (const button of document.querySelectorAll("#history-range button"))
  button.addEventListener("click", () => setRange(button.dataset.range));
document.addEventListener("visibilitychange", () => {
  if (view.visible && !document.hidden) load();
  else schedule();
});

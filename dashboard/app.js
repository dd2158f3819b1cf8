// The hub's dashboard: reads GET /v1/status every two seconds and shows it.
// Every value goes into the page as text (textContent), never as markup: table,
// bucket and node names come from other people's databases. The token lives in
// sessionStorage for this tab only; a #token= fragment is taken and then
// removed from the address bar. A hidden tab stops polling until it is shown.

import { $, ago, fill, KEY, number } from "./console.js";

const REFRESH_MS = 2000;

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function setState(text, kind) {
  const state = $("state");
  state.textContent = text;
  state.className = `state ${kind}`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

function render(s) {
  $("node").textContent = s.hub.nodeId;
  $("uptime").textContent = duration(s.hub.uptimeSeconds);

  const log = s.log;
  $("log-entries").textContent = log ? number.format(log.entries) : "–";
  $("log-detail").textContent = log
    ? `${number.format(log.rows)} rows, ${number.format(log.tombstones)} tombstones, ${number.format(log.pending)} pending`
    : "not a replica yet";
  $("log-seq").textContent = log ? number.format(log.lastSeq) : "–";
  $("log-staged").textContent = log ? `${number.format(log.staged)} staged` : "";

  const c = s.conflicts;
  $("conflicts").textContent = c ? number.format(c.unique + c.insert + c.orphan) : "–";
  $("conflicts-detail").textContent = c
    ? `${number.format(c.unique)} unique, ${number.format(c.insert)} insert, ${number.format(c.orphan)} orphan; ${number.format(c.held + c.failed)} quarantined`
    : "";

  $("client-count").textContent = number.format(s.clients.length);
  $("live").textContent = `${number.format(s.hub.liveSubscribers)} live subscribers`;

  const queues = Object.entries(s.queues);
  const sum = (state) => queues.reduce((n, [, q]) => n + q[state], 0);
  $("jobs").textContent = number.format(sum("pending") + sum("running"));
  $("jobs-detail").textContent = `pending or running; ${number.format(sum("failed"))} failed`;

  fill(
    "buckets",
    Object.entries(s.buckets),
    ([bucket, tables]) => [bucket, tables.join(", ")],
    "no tracked tables",
  );
  fill(
    "clients",
    s.clients,
    (c) => [
      [c.nodeId, "mono"],
      c.lastAction,
      ago(c.lastSeenAt),
      [number.format(c.pushed), "n"],
      [number.format(c.pulled), "n"],
      c.buckets.join(", "),
    ],
    "no client since the hub started",
  );
  fill(
    "peers",
    s.peers,
    (p) => [
      p.id,
      p.address ?? "(mesh)",
      [p.state, p.state],
      ago(p.lastSeenAt),
      [p.rttMs === null ? "–" : `${p.rttMs} ms`, "n"],
      p.buckets.join(", "),
    ],
    "no peers",
  );
  // The richer view is the console's; this is the list, from the same `remotes` (secrets never in it).
  fill(
    "remotes",
    s.remotes ?? [],
    (r) => [
      r.id,
      [r.target, "mono"],
      r.paused ? `${r.direction} (paused)` : r.direction,
      ago(r.lastSuccessAt),
      [number.format(r.pending), "n"],
      r.lastError !== null && (r.lastSuccessAt === null || r.lastErrorAt > r.lastSuccessAt)
        ? r.lastError
        : "",
    ],
    "no remote targets",
  );
  fill(
    "cursors",
    s.cursors,
    (c) => [[c.peer, "mono"], c.bucket, c.direction, [c.value, "mono"], ago(c.updatedAt)],
    "no cursors",
  );
  fill(
    "queues",
    queues,
    ([name, q]) => [
      name,
      ...[q.pending, q.running, q.completed, q.failed, q.cancelled].map((n) => [number.format(n), "n"]),
    ],
    "no jobs",
  );
}

let timer = null;
let busy = false;

async function refresh() {
  // One poll at a time: a tab shown again while one is on its way waits for it.
  if (busy) return;
  busy = true;
  clearTimeout(timer);
  let again = true;
  try {
    again = await poll();
  } finally {
    busy = false;
  }
  // A hidden tab asks nothing of the hub; it refreshes when shown again.
  if (again && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

/** One look at GET /v1/status; false when the token was refused (the form starts the next try). */
async function poll() {
  const token = sessionStorage.getItem(KEY);
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  try {
    const res = await fetch("/v1/status", { headers, cache: "no-store" });
    const body = await res.json().catch(() => null);
    if (res.status === 401 || res.status === 403) {
      sessionStorage.removeItem(KEY);
      $("main").hidden = true;
      $("login").hidden = false;
      const refused = res.status === 403 ? body?.error?.message : "the hub refused this token";
      setState(token ? refused : "a token is needed", "error");
      return false;
    }
    if (!res.ok) {
      setState(body?.error?.message ?? `the hub answered ${res.status}`, "error");
    } else {
      $("login").hidden = true;
      $("main").hidden = false;
      render(body);
      // Other views (sync.js, storage.js) draw from the same status rather than asking the hub again.
      document.dispatchEvent(new CustomEvent("tidewire:status", { detail: body }));
      // The hub recounts a large log only every so often (hub.statusAt says when it last did).
      const countedAt = Date.parse(body.hub.statusAt);
      const counted = Date.now() - countedAt > 3000 ? ` · counts from ${ago(countedAt)}` : "";
      setState(`updated ${new Date().toLocaleTimeString()}${counted}`, "ok");
    }
  } catch (err) {
    setState(`cannot reach the hub: ${err.message}`, "error");
  }
  return true;
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  refresh();
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !$("main").hidden) refresh();
});

takeTokenFromFragment();
refresh();

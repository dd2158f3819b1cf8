// The dashboard's Sync view: from the status app.js reads (the "tidewire:status"
// event) the lag of each client and push cursor — changes behind and the age of
// the oldest unsent one — with last success and last error, rows and log
// entries per table and bucket, and the remote targets; from GET /v1/conflicts
// the conflicts and quarantined changes, paged and filtered, one of them
// inspected (both versions, the reason, the change), restored or retried.
// Values are set as text, never as markup: rows and reasons are other
// people's data. Actions need an admin token; a refusal shows the hub's words.

import { $, ago, call, fill, linkButton, number, say, when } from "./console.js";

const PAGE = 20;
const view = { shown: false, loaded: false, offset: 0, total: 0, filter: {}, selected: null, status: null };

function show(sync) {
  view.shown = sync;
  if (!sync) return;
  if (view.status) renderStatus(view.status);
  if (!view.loaded) loadConflicts();
}

/** Behind: the changes waiting, marked when any do; and their oldest one's age. */
function lagCells(lag) {
  if (!lag) return [["–", "n"], "–", ["–", "n"]];
  return [
    [number.format(lag.changes), lag.changes > 0 ? "n behind" : "n"],
    lag.oldestAt === null ? "none" : ago(lag.oldestAt).replace(" ago", ""),
    [number.format(lag.seqBehind), "n"],
  ];
}

function renderStatus(s) {
  fill(
    "sync-clients",
    s.clients,
    (c) => [
      [c.nodeId, "mono"],
      c.buckets.join(", "),
      ...lagCells(c.lag ?? null),
      ago(c.lastSuccessAt ?? c.lastSeenAt),
      c.lastError ? [`${c.lastError} (${ago(c.lastErrorAt)})`, "error-text"] : "–",
    ],
    "no client since the hub started",
  );
  fill("sync-peers", peerRows(s), (r) => r, "no peers or cursors");
  fill(
    "sync-tables",
    s.counts?.tables ?? [],
    (t) => [
      t.relayed ? `${t.table} (relayed)` : t.table,
      t.bucket,
      [t.rows === null ? `${number.format(t.liveKeys)} keys` : number.format(t.rows), "n"],
      [number.format(t.logEntries), "n"],
      [number.format(t.tombstones), "n"],
    ],
    "no tracked tables",
  );
  fill(
    "sync-buckets",
    s.counts?.buckets ?? [],
    (b) => [b.bucket, ...[b.tables, b.rows, b.logEntries, b.tombstones].map((n) => [number.format(n), "n"])],
    "no buckets",
  );
  fill(
    "sync-remotes",
    s.remotes ?? [],
    (r) => [
      [r.target, "mono"],
      r.backend,
      r.direction,
      `${Math.round(r.intervalMs / 1000)} s`,
      r.tables === null ? "all" : r.tables.join(", "),
      r.paused ? ["paused", "error-text"] : "running",
      when(r.lastPushAt),
      when(r.lastPullAt),
      ago(r.lastSuccessAt),
      [number.format(r.pending), r.pending > 0 ? "n behind" : "n"],
      r.lastError ? [`${r.lastError} (${ago(r.lastErrorAt)})`, "error-text"] : "–",
    ],
    s.remotes === undefined ? "this hub reports no remote targets" : "no remote targets",
  );
}

/**
 * One row per cursor, with its peer's liveness where the peer is known (by
 * the node id its hub answered with, or its id), and one per peer that has
 * no cursor yet. A pull cursor's lag is the peer's to know: shown as –.
 */
function peerRows(s) {
  const peerOf = new Map();
  for (const p of s.peers) peerOf.set(p.nodeId ?? p.id, p);
  const used = new Set();
  const rows = s.cursors.map((c) => {
    const p = peerOf.get(c.peer);
    if (p) used.add(p);
    return [
      [p ? `${p.id} (${c.peer})` : c.peer, "mono"],
      c.bucket,
      c.direction,
      [c.value, "n mono"],
      ...lagCells(c.lag ?? null).slice(0, 2),
      ago(p?.lastSeenAt ?? c.updatedAt),
      p?.lastError ? [p.lastError, "error-text"] : "–",
    ];
  });
  for (const p of s.peers)
    if (!used.has(p))
      rows.push([
        [p.id, "mono"],
        p.buckets.join(", "),
        "–",
        ["–", "n"],
        ["–", "n"],
        "–",
        ago(p.lastSeenAt),
        p.lastError ? [p.lastError, "error-text"] : "–",
      ]);
  return rows;
}

async function loadConflicts() {
  view.loaded = true;
  const params = new URLSearchParams({ ...view.filter, limit: String(PAGE), offset: String(view.offset) });
  say("conflicts-status", "loading…");
  const [ok, body] = await call("GET", `/v1/conflicts?${params}`);
  if (!ok) {
    say("conflicts-status", body.error.message, "error");
    return;
  }
  view.total = body.total;
  fillTables(body.tables);
  fill(
    "conflicts-table",
    body.items,
    (c) => [
      [linkButton(String(c.id), () => openConflict(c.id)), "n"],
      c.kind,
      c.table,
      [JSON.stringify(c.pk), "mono"],
      when(c.at),
      stateOf(c),
      [c.reason, quarantined(c) ? "error-text" : ""],
    ],
    "nothing matches",
  );
  const last = Math.min(view.offset + PAGE, body.total);
  $("c-page").textContent =
    body.total === 0
      ? ""
      : `${number.format(view.offset + 1)}–${number.format(last)} of ${number.format(body.total)}`;
  $("c-prev").disabled = view.offset === 0;
  $("c-next").disabled = last >= body.total;
  const c = body.counts;
  const waiting = c.held + c.failed;
  $("c-retry-all").disabled = waiting === 0;
  say(
    "conflicts-status",
    `${number.format(body.total)} matching; in all ${number.format(c.unique + c.insert + c.orphan)} conflicts, ${number.format(waiting)} quarantined`,
    "ok",
  );
}

const quarantined = (c) => c.kind === "held" || c.kind === "failed";
const stateOf = (c) =>
  quarantined(c)
    ? `quarantined, ${c.attempts} attempt${c.attempts === 1 ? "" : "s"}`
    : c.restoredAt
      ? `restored ${ago(c.restoredAt)}`
      : "open";

function fillTables(tables) {
  const select = $("c-table");
  const names = ["", ...tables.map((t) => t.table)];
  if ([...select.options].map((o) => o.value).join("\n") === names.join("\n")) return;
  const current = select.value;
  select.replaceChildren(
    ...names.map((name) => {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = name === "" ? "any" : `${name} (${tables.find((t) => t.table === name).count})`;
      return o;
    }),
  );
  select.value = names.includes(current) ? current : "";
}

async function openConflict(id) {
  const [ok, body] = await call("GET", `/v1/conflicts/${id}`);
  if (!ok) {
    say("sync-msg", body.error.message, "error");
    return;
  }
  renderConflict(body.item);
}

const version = (v) => (v ? JSON.stringify({ key: v.pk, ...v.columns }, null, 2) : "(none)");

function renderConflict(c) {
  view.selected = c;
  const q = quarantined(c);
  const text = {
    "cd-what": q ? "Quarantined change" : "Conflict",
    "cd-id": String(c.id),
    "cd-kind": c.kind,
    "cd-table": c.table,
    "cd-key": JSON.stringify(c.pk),
    "cd-reason": c.reason,
    "cd-origin": `${c.origin} at ${c.hlc}${q && c.from ? `, received from ${c.from}` : ""}`,
    "cd-at": when(c.at),
    "cd-state": stateOf(c),
    "cd-lost": version(c.lost),
    "cd-kept": version(c.kept),
    "cd-change": q ? JSON.stringify(c.change, null, 2) : "",
  };
  for (const [id, value] of Object.entries(text)) $(id).textContent = value;
  $("cd-versions").hidden = q;
  $("cd-change-box").hidden = !q;
  $("cd-restore").hidden = q;
  $("cd-replace").parentElement.hidden = q;
  $("cd-replace").checked = false;
  $("cd-retry").hidden = !q;
  $("conflict-detail").hidden = false;
}

async function act(action) {
  const c = view.selected;
  if (!c) return;
  const body = action === "restore" ? { replace: $("cd-replace").checked } : {};
  const [ok, answer] = await call("POST", `/v1/conflicts/${c.id}/${action}`, body);
  if (!ok) {
    say("sync-msg", `${action} refused: ${answer.error.message}`, "error");
  } else if (action === "restore") {
    say("sync-msg", `restore: conflict ${c.id} is restored; the row syncs as a local write`, "ok");
    renderConflict(answer.item);
  } else {
    say("sync-msg", `retry: change ${c.id} applied and left the quarantine`, "ok");
    $("conflict-detail").hidden = true;
  }
  loadConflicts();
}

async function retryAll() {
  const [ok, answer] = await call("POST", "/v1/conflicts/retry", {});
  if (!ok) say("sync-msg", `retry refused: ${answer.error.message}`, "error");
  else say("sync-msg", `retry: ${answer.applied} applied, ${answer.left} still quarantined`, "ok");
  loadConflicts();
}

document.addEventListener("tidewire:status", (event) => {
  view.status = event.detail;
  if (view.shown) renderStatus(view.status);
});
document.addEventListener("tidewire:view", (e) => show(e.detail === "sync"));
$("conflicts-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  view.filter = {};
  if ($("c-kind").value) view.filter.kind = $("c-kind").value;
  if ($("c-table").value) view.filter.table = $("c-table").value;
  view.offset = 0;
  loadConflicts();
});
$("c-prev").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE);
  loadConflicts();
});
$("c-next").addEventListener("click", () => {
  view.offset += PAGE;
  loadConflicts();
});
$("c-retry-all").addEventListener("click", retryAll);
$("cd-restore").addEventListener("click", () => act("restore"));
$("cd-retry").addEventListener("click", () => act("retry"));

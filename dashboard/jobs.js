// The dashboard's Jobs view: browse a queue's jobs (filter, search, sort, page),
// look at one job, and act on it or on every job the filter matches.
// Every value is set as text (textContent), never as markup: payloads and
// errors are other people's data. Actions need an admin token; the hub says
// so when the token is not one, and the page shows the hub's words. A bulk
// action shows the count it will send back as `expect`: if the matching jobs
// changed meanwhile, the hub refuses and the page counts again.

import { $, call, fill, linkButton, number, say, when } from "./console.js";
import { loadSchedules } from "./schedules.js";

const PAGE = 25;

const view = {
  offset: 0,
  total: 0,
  filter: {},
  queue: "default",
  chosen: false,
  selected: null,
  loaded: false,
};

function shown(which) {
  if (which === "jobs" && !view.loaded) load();
}

function readFilter() {
  const f = {};
  if ($("f-state").value) f.state = $("f-state").value;
  if ($("f-type").value.trim()) f.type = $("f-type").value.trim();
  if ($("f-q").value) f.q = $("f-q").value;
  view.filter = f;
  view.queue = $("f-queue").value || view.queue;
  view.chosen = true;
}

async function load() {
  view.loaded = true;
  const params = new URLSearchParams({
    queue: view.queue,
    ...view.filter,
    limit: String(PAGE),
    offset: String(view.offset),
    sort: $("f-sort").value,
    order: $("f-order").value,
  });
  say("jobs-status", "loading…");
  const [ok, body] = await call("GET", `/v1/jobs?${params}`);
  if (!ok) {
    say("jobs-status", body.error.message, "error");
    return;
  }
  // Until the user picks one, show a queue that has jobs rather than an empty "default".
  if (!view.chosen && !body.queues.includes(body.queue) && body.queues.length > 0) {
    view.chosen = true;
    view.queue = body.queues[0];
    return load();
  }
  fillQueues(body.queues, body.queue);
  view.total = body.total;
  renderRows(body.jobs);
  const last = Math.min(view.offset + PAGE, body.total);
  $("page-info").textContent =
    body.total === 0
      ? ""
      : `${number.format(view.offset + 1)}–${number.format(last)} of ${number.format(body.total)}`;
  $("page-prev").disabled = view.offset === 0;
  $("page-next").disabled = last >= body.total;
  say(
    "jobs-status",
    `${number.format(body.total)} matching job${body.total === 1 ? "" : "s"} in queue ${body.queue}`,
    "ok",
  );
  $("bulk-start").textContent = `Apply to all ${number.format(body.total)}…`;
  $("bulk-start").disabled = body.total === 0;
  loadSchedules({ queue: view.queue, call, when });
}

function fillQueues(names, current) {
  const select = $("f-queue");
  const all = names.includes(current) ? names : [current, ...names];
  if ([...select.options].map((o) => o.value).join("\n") === all.join("\n")) return;
  select.replaceChildren(
    ...all.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }),
  );
  select.value = current;
}

function renderRows(jobs) {
  fill(
    "jobs-table",
    jobs,
    (job) => [
      [linkButton(String(job.id), () => openJob(job.id)), "n"],
      [job.state, `state-${job.state}`],
      job.type,
      [String(job.priority), "n"],
      [`${job.attempts}/${job.maxAttempts}`, "n"],
      when(job.runAt),
      when(job.createdAt),
      [(job.lastError ?? "").split("\n")[0].slice(0, 80), "error-text"],
    ],
    "no jobs match",
  );
}

async function openJob(id) {
  const [ok, body] = await call("GET", `/v1/jobs/${id}?${new URLSearchParams({ queue: view.queue })}`);
  if (!ok) {
    say("action-msg", body.error.message, "error");
    return;
  }
  renderJob(body.job);
}

function renderJob(job) {
  view.selected = job;
  const text = {
    "d-id": String(job.id),
    "d-queue": job.queue,
    "d-type": job.type,
    "d-state": job.state,
    "d-priority": String(job.priority),
    "d-attempts": `${job.attempts} of ${job.maxAttempts}`,
    "d-created": when(job.createdAt),
    "d-run-at": when(job.runAt),
    "d-started": when(job.startedAt),
    "d-finished": when(job.finishedAt),
    "d-lease": job.leaseOwner ? `${job.leaseOwner} until ${when(job.leaseExpiresAt)}` : "–",
    "d-key": job.key ?? "–",
    "d-payload": JSON.stringify(job.payload, null, 2),
    "d-error": job.lastError ?? "–",
  };
  for (const [id, value] of Object.entries(text)) $(id).textContent = value;
  $("d-new-priority").value = String(job.priority);
  $("job-detail").hidden = false;
}

async function act(action) {
  const job = view.selected;
  if (!job) return;
  const body = { queue: job.queue };
  if (action === "priority") {
    const n = Number($("d-new-priority").value);
    if (!Number.isInteger(n)) {
      say("action-msg", "the priority must be a whole number", "error");
      return;
    }
    body.priority = n;
  }
  const [ok, answer] = await call("POST", `/v1/jobs/${job.id}/${action}`, body);
  if (!ok) {
    say("action-msg", `${action} refused: ${answer.error.message}`, "error");
    return;
  }
  say("action-msg", `${action}: job ${job.id} is now ${answer.job ? answer.job.state : "deleted"}`, "ok");
  if (answer.job) renderJob(answer.job);
  else $("job-detail").hidden = true;
  load();
}

function describeFilter() {
  const parts = Object.entries(view.filter).map(([k, v]) => `${k} ${JSON.stringify(v)}`);
  return parts.length === 0 ? "every job" : `jobs with ${parts.join(", ")}`;
}

function askBulk() {
  const action = $("bulk-action").value;
  $("bulk-question").textContent =
    `${action} ${number.format(view.total)} job${view.total === 1 ? "" : "s"}: ${describeFilter()} in queue ${view.queue}? Jobs whose state does not allow it are left as they are.`;
  $("bulk-confirm").hidden = false;
}

async function runBulk() {
  $("bulk-confirm").hidden = true;
  const action = $("bulk-action").value;
  const [ok, answer] = await call("POST", "/v1/jobs/bulk", {
    queue: view.queue,
    action,
    filter: view.filter,
    expect: view.total,
  });
  if (!ok) say("action-msg", `bulk ${action} refused: ${answer.error.message}`, "error");
  else say("action-msg", `bulk ${action}: ${answer.changed} of ${answer.matched} jobs changed`, "ok");
  load();
}

document.addEventListener("tidewire:view", (e) => shown(e.detail));
$("jobs-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  readFilter();
  view.offset = 0;
  $("bulk-confirm").hidden = true;
  load();
});
$("page-prev").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE);
  load();
});
$("page-next").addEventListener("click", () => {
  view.offset += PAGE;
  load();
});
$("bulk-start").addEventListener("click", askBulk);
$("bulk-yes").addEventListener("click", runBulk);
$("bulk-no").addEventListener("click", () => {
  $("bulk-confirm").hidden = true;
});
for (const button of document.querySelectorAll("#job-detail [data-action]")) {
  button.addEventListener("click", () => act(button.dataset.action));
}

// The Jobs view's periodic schedules: each with its next run and whether it is
// paused, and a Pause or Resume button. The buttons need an admin token; the
// hub says so otherwise, and the page shows the hub's words. Resuming skips
// the runs missed while paused: the hub answers with the next run, shown here.
// Every value is set as text, never as markup.

import { $, fill } from "./console.js";

/** Fills the schedules table of `queue`; `call` and `when` are the Jobs view's own. */
export async function loadSchedules({ queue, call, when }) {
  const [ok, body] = await call("GET", `/v1/periodic?${new URLSearchParams({ queue })}`);
  if (!ok) return;
  const rows = body.schedules.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.name = p.name;
    const every = p.cron === null ? `${Math.round(p.everyMs / 1000)} s` : `cron ${p.cron}`;
    const state = p.paused ? `paused since ${when(p.pausedAt)}` : "active";
    for (const text of [
      p.name,
      p.type,
      every,
      p.paused ? "–" : when(p.nextRunAt),
      when(p.lastRunAt),
      state,
    ]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const button = document.createElement("button");
    button.type = "button";
    const action = p.paused ? "resume" : "pause";
    button.textContent = p.paused ? "Resume" : "Pause";
    button.dataset.action = action;
    button.addEventListener("click", () => act({ queue, call, when }, p.name, action));
    const td = document.createElement("td");
    td.append(button);
    tr.append(td);
    return tr;
  });
  if (rows.length === 0) fill("schedules", [], () => [], "no periodic schedules in this queue");
  else $("schedules").tBodies[0].replaceChildren(...rows);
}

async function act(ctx, name, action) {
  const path = `/v1/periodic/${encodeURIComponent(name)}/${action}`;
  const [ok, answer] = await ctx.call("POST", path, { queue: ctx.queue });
  const msg = $("schedules-msg");
  if (!ok) {
    msg.textContent = `${action} refused: ${answer.error.message}`;
    msg.className = "note error";
  } else {
    const s = answer.schedule;
    msg.textContent = s.paused
      ? `schedule ${s.name} is paused`
      : `schedule ${s.name} is active; it runs next at ${ctx.when(s.nextRunAt)}`;
    msg.className = "note ok";
  }
  loadSchedules(ctx);
}

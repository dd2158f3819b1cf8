// What the dashboard's views share (app.js, jobs.js, sync.js): the element
// lookup, the token's key, one request to the hub with the user's token,
// times shown as dates or ages, a status line, and a table filled from rows.
// Every value goes into the page as text (textContent), never as markup:
// names, payloads and rows come from other people's databases.

export const KEY = "tidewire.token";
export const $ = (id) => document.getElementById(id);
export const number = new Intl.NumberFormat("en");

function headers(json) {
  const token = sessionStorage.getItem(KEY);
  const h = token ? { authorization: `Bearer ${token}` } : {};
  if (json) h["content-type"] = "application/json";
  return h;
}

/** One request to the hub; answers [ok, body], body holding the hub's `error` when refused. */
export async function call(method, path, body) {
  try {
    const res = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok && !answer.error) answer.error = { message: `the hub answered ${res.status}` };
    return [res.ok, answer];
  } catch (err) {
    return [false, { error: { message: `cannot reach the hub: ${err.message}` } }];
  }
}

export function when(ms) {
  return ms === null || ms === undefined ? "–" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

export function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function say(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = `note ${kind ?? ""}`;
}

/** A button that looks like a link: a row's way to its page. */
export function linkButton(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/**
 * Fills a table's body with one row per item; each cell is a value or
 * [value, className], the value text or an element (a button), put in as it is.
 */
export function fill(tableId, items, cells, emptyText) {
  const body = $(tableId).tBodies[0];
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      const [value, cls] = Array.isArray(cell) ? cell : [cell];
      if (value instanceof Node) td.append(value);
      else td.textContent = String(value);
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = "empty";
    td.textContent = emptyText;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

const VIEWS = ["overview", "jobs", "sync", "history"];

/**
 * Shows one view and hides the others. The views' own modules hear
 * `tidewire:view` (the name shown) and load what they need; none of them
 * touches another's elements.
 */
export function showView(name) {
  for (const v of VIEWS) {
    $(v === "overview" ? "overview" : `${v}-view`).hidden = v !== name;
    $(`show-${v}`).setAttribute("aria-pressed", String(v === name));
  }
  document.dispatchEvent(new CustomEvent("tidewire:view", { detail: name }));
}

for (const v of VIEWS) $(`show-${v}`).addEventListener("click", () => showView(v));

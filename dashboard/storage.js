// The overview's storage part: the database file's size and free pages, the
// attempts jobs spent per state and queue, and the messages in each outbox,
// from the status document app.js reads (it announces each one with a
// "tidewire:status" event, so the hub is asked once). Values are set as text.

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("en");
const STATES = ["pending", "running", "completed", "failed", "cancelled"];
const OUTBOX_STATES = ["incoming", "active", "deferred", "delivered", "bounced"];

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function rows(tableId, items, cells, emptyText) {
  const list = items.map((item) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  if (list.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = "empty";
    td.textContent = emptyText;
    tr.append(td);
    list.push(tr);
  }
  $(tableId).tBodies[0].replaceChildren(...list);
}

function render(s) {
  const st = s.storage;
  if (st) {
    $("db-size").textContent = bytes(st.sizeBytes);
    $("db-detail").textContent =
      `${number.format(st.freePages)} free pages (${bytes(st.freeBytes)}) · WAL ${bytes(st.walBytes)} · auto-vacuum ${st.autoVacuum}`;
  }
  const n = (v) => [number.format(v), "n"];
  rows(
    "queue-attempts",
    Object.entries(s.queues ?? {}),
    ([name, q]) => [[name], ...STATES.map((state) => n(q.attempts?.[state] ?? 0))],
    "no jobs",
  );
  rows(
    "outboxes",
    Object.entries(s.outboxes ?? {}),
    ([name, c]) => [[name], ...OUTBOX_STATES.map((state) => n(c[state])), n(c.total)],
    "no messages in any outbox",
  );
}

document.addEventListener("tidewire:status", (event) => render(event.detail));

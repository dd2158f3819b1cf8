// The overview's storage part: the database file's size and free pages, the
// attempts jobs spent per state and queue, and the messages in each outbox,
// from the status document app.js reads (it announces each one with a
// "tidewire:status" event, so the hub is asked once). Values are set as text.

import { $, fill } from "./console.js";

const number = new Intl.NumberFormat("en");
const STATES = ["pending", "running", "completed", "failed", "cancelled"];
const OUTBOX_STATES = ["incoming", "active", "deferred", "delivered", "bounced"];

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function render(s) {
  const st = s.storage;
  if (st) {
    $("db-size").textContent = bytes(st.sizeBytes);
    $("db-detail").textContent =
      `${number.format(st.freePages)} free pages (${bytes(st.freeBytes)}) · WAL ${bytes(st.walBytes)} · auto-vacuum ${st.autoVacuum}`;
  }
  const n = (v) => [number.format(v), "n"];
  fill(
    "queue-attempts",
    Object.entries(s.queues ?? {}),
    ([name, q]) => [name, ...STATES.map((state) => n(q.attempts?.[state] ?? 0))],
    "no jobs",
  );
  fill(
    "outboxes",
    Object.entries(s.outboxes ?? {}),
    ([name, c]) => [name, ...OUTBOX_STATES.map((state) => n(c[state])), n(c.total)],
    "no messages in any outbox",
  );
}

document.addEventListener("tidewire:status", (event) => render(event.detail));

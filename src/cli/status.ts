/**
 * `tidewire status <db> [--json]`: what a database holds as a replica and a
 * queue: node id, clock, tracked tables by bucket, each table's capture
 * (installed, columns tracked against present, a pending reconciliation or a
 * problem and what to run), rows and log entries per table, the change log's size,
 * cursors (a push cursor with the changes it has yet to send), peers (id,
 * address, state, last seen, rtt), job counts and attempts per queue, the
 * file's size and free pages, and message counts per outbox.
 *
 * Contract: reads only. The database is opened read-only and never migrated,
 * so a file that is not (yet) a replica is reported as such, not changed.
 */
import type { Command } from "commander";
import { readStatus, type Status } from "../status.js";
import { openStore } from "../store.js";
import { existingDatabase, printJson, printText, table, upToDate } from "./io.js";
import { peersTable } from "./peers.js";
import { remotesTable } from "./remote-targets.js";
import { describeStorage, outboxesTable, queuesTable } from "./stats.js";

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description(
      "show a database's node id, tracked tables, change log, cursors, queues, outboxes and free pages",
    )
    .argument("<db>", "the database file (it must exist)")
    .option("--json", "print one JSON document on stdout")
    .action((db: string, flags: { json?: boolean }) => {
      const path = existingDatabase(db);
      const store = upToDate(openStore(path, { readonly: true }));
      let status: Status;
      try {
        status = readStatus(store);
      } finally {
        store.close();
      }
      if (flags.json) printJson({ ok: true, ...status });
      else printText(render(status));
    });
}

function render(s: Status): string {
  const out: string[] = [];
  if (s.nodeId === null) {
    out.push("node     none: not a replica yet (tidewire init <db> --table <table> makes it one)");
  } else {
    out.push(`node     ${s.nodeId}`);
    if (s.clock) out.push(`clock    ${s.clock.hlc} (${s.clock.time})`);
  }
  const buckets = Object.entries(s.buckets);
  out.push(buckets.length ? "tables" : "tables   none tracked");
  for (const [bucket, tables] of buckets) out.push(`  ${bucket}: ${tables.join(", ")}`);
  if (s.capture.length > 0) {
    out.push("capture");
    out.push(
      indent(
        table(
          ["TABLE", "STATE", "TRIGGERS", "COLUMNS TRACKED", "COLUMNS PRESENT"],
          s.capture.map((c) => [
            c.renamedTo ? `${c.table} -> ${c.renamedTo}` : c.table,
            c.state === "reconcile" ? "reconcile pending (next ingest or sync)" : c.state,
            c.installed ? "installed" : "missing",
            c.tracked.join(", ") || "-",
            c.present === null ? "(no table)" : c.present.join(", ") || "-",
          ]),
        ),
      ),
    );
    for (const c of s.capture) if (c.problem) out.push(`  ${c.problem}`);
  }
  if (s.counts.tables.length > 0) {
    out.push("rows");
    out.push(
      indent(
        table(
          ["TABLE", "BUCKET", "ROWS", "LOG ENTRIES", "TOMBSTONES"],
          s.counts.tables.map((t) => [
            t.table,
            t.bucket,
            t.rows === null ? `${t.liveKeys} keys${t.relayed ? " (relayed)" : ""}` : String(t.rows),
            String(t.logEntries),
            String(t.tombstones),
          ]),
        ),
      ),
    );
  }
  if (s.log) {
    const l = s.log;
    out.push(
      `log      ${l.entries} entries: ${l.rows} rows, ${l.tombstones} tombstones, ${l.pending} pending; last sequence ${l.lastSeq}; ${l.staged} staged`,
    );
  }
  if (s.conflicts) {
    const c = s.conflicts;
    const any = c.unique + c.insert + c.orphan + c.held + c.failed > 0;
    out.push(
      `conflicts ${c.unique} unique, ${c.insert} insert, ${c.orphan} orphan; quarantined ${c.held} held, ${c.failed} failed${any ? " (tidewire conflicts list <db>)" : ""}`,
    );
  }
  if (s.cursors.length === 0) out.push("cursors  none");
  else {
    out.push("cursors");
    out.push(
      indent(
        table(
          ["PEER", "BUCKET", "DIRECTION", "VALUE", "BEHIND", "UPDATED"],
          s.cursors.map((c) => [
            c.peer,
            c.bucket,
            c.direction,
            c.value,
            // Changes not yet pushed, and when the oldest was written; a pull cursor's is the peer's to know.
            c.lag === null
              ? "-"
              : `${c.lag.changes}${c.lag.oldestAt === null ? "" : ` (oldest ${new Date(c.lag.oldestAt).toISOString()})`}`,
            new Date(c.updatedAt).toISOString(),
          ]),
        ),
      ),
    );
  }
  if (s.peers.length === 0) out.push("peers    none");
  else out.push("peers", indent(peersTable(s.peers)));
  if (s.remotes.length === 0) out.push("remotes  none");
  else out.push("remotes", indent(remotesTable(s.remotes)));
  const queues = Object.entries(s.queues);
  if (queues.length === 0) out.push("queues   none");
  else out.push("queues", indent(queuesTable(s.queues)));
  const outboxes = Object.entries(s.outboxes);
  if (outboxes.length === 0) out.push("outboxes none");
  else out.push("outboxes", indent(outboxesTable(s.outboxes)));
  out.push(`storage  ${describeStorage(s.storage)}`);
  return out.join("\n");
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}

/**
 * `tidewire clock reset <db>`: the recovery of a replica whose own clock once
 * ran far ahead, so that every peer refuses its changes (see
 * src/replica/clock-reset.ts for what is re-stamped and why that is safe).
 *
 * Contract: the database must exist and be a replica (have a node id); the
 * reset is one transaction, safe while `serve` or `sync` run on the file. A
 * change of another node stamped beyond the window is a failure (exit 1) that
 * changes nothing.
 */
import type { Command } from "commander";
import ms from "ms";
import { StoreError } from "../errors.js";
import { Replica } from "../replica/replica.js";
import { hasClock } from "../replica/report.js";
import { openStore } from "../store.js";
import { commandGroup, verb } from "./group.js";
import { existingDatabase, maxDriftOption, printJson, printText } from "./io.js";

export function registerClock(program: Command): void {
  const clock = commandGroup(program, "clock", "recover a replica whose clock ran ahead");
  verb(
    clock,
    "reset",
    "set the clock back to now and give this node's changes stamped beyond the drift window fresh stamps, so peers accept them",
  )
    .addOption(maxDriftOption())
    .action((db: string, flags: { maxDrift?: number; json?: boolean }) => {
      const path = existingDatabase(db);
      mustBeReplica(path);
      const replica = Replica.open(path, { ingestIntervalMs: 0, maxDriftMs: flags.maxDrift });
      try {
        const r = replica.resetClock();
        if (flags.json) printJson({ ok: true, nodeId: replica.nodeId, ...r });
        else
          printText(
            r.restamped === 0
              ? `clock of ${replica.nodeId} set from ${r.before} to ${r.after}; no change of its needed new stamps`
              : `clock of ${replica.nodeId} set from ${r.before} (${ms(r.aheadMs)} ahead) to ${r.after}; ${r.restamped} change${r.restamped === 1 ? "" : "s"} (${r.entries} log entries) re-stamped, sent on the next sync`,
          );
      } finally {
        replica.close();
      }
    });
}

/** A file without a clock would be given one (and a node id) by Replica.open: refuse it. */
function mustBeReplica(path: string): void {
  const store = openStore(path, { readonly: true });
  try {
    if (!hasClock(store))
      throw new StoreError(
        `${path} is not a replica (it has no clock); \`tidewire init\` makes one`,
        "ERR_NOT_REPLICA",
      );
  } finally {
    store.close();
  }
}

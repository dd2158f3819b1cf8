/**
 * The daemon's `tidewire.collect-pins` maintenance job: one garbage
 * collection of the pins beside its database, logged on one line.
 */
import type { Logger } from "../log.js";
import type { Handler } from "../queue/worker.js";
import type { Pins } from "./pins.js";

export const COLLECT_PINS = "tidewire.collect-pins";

export function collectPinsHandler(pins: Pins, logger: Logger, graceMs?: number): Handler {
  return async () => {
    const r = await pins.collect({ graceMs });
    const line = {
      deleted: r.deleted.length,
      bytesFreed: r.bytesFreed,
      kept: r.kept,
      tempFiles: r.tempFilesRemoved,
    };
    if (r.skipped) logger.debug(line, `pin collection skipped: ${r.skipped}`);
    else logger.info(line, `pin collection deleted ${r.deleted.length} unreferenced pins`);
    return line;
  };
}

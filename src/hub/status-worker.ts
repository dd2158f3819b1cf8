/**
 * The thread StatusReader runs readStatus in: its own read-only connection to
 * the hub's database (WAL lets it read while the hub writes), answering each
 * message (`{ readers }`, readStatus's options) with `{ status, ms }` (how
 * long the read took) or `{ error }`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { readStatus, type StatusOptions } from "../status.js";
import { openStore } from "../store.js";

const store = openStore((workerData as { path: string }).path, { readonly: true });
parentPort!.on("message", (options: StatusOptions | undefined) => {
  try {
    // The read's own duration: the thread's start-up is not what a repeat would cost.
    const started = performance.now();
    const status = readStatus(store, options ?? {});
    parentPort!.postMessage({ status, ms: performance.now() - started });
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).message });
  }
});

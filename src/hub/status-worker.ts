/**
 * The thread StatusReader runs readStatus in: its own read-only connection to
 * the hub's database (WAL lets it read while the hub writes), answering each
 * message with `{ status }` or `{ error }`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { readStatus } from "../status.js";
import { openStore } from "../store.js";

const store = openStore((workerData as { path: string }).path, { readonly: true });
parentPort!.on("message", () => {
  try {
    parentPort!.postMessage({ status: readStatus(store) });
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).message });
  }
});

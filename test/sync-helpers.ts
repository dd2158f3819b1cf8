/** Helpers for the sync tests: replicas with one tracked table, row dumps, a hub over a replica. */
import { join } from "node:path";
import { Hub } from "../src/hub/hub.js";
import { Replica } from "../src/replica/replica.js";

export const ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)";

export function openItems(dir: string, nodeId: string, bucket = "default"): Replica {
  const r = Replica.open(join(dir, `${nodeId}.db`), { nodeId });
  r.store.db.exec(`${ITEMS.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")}`);
  r.track("items", { bucket });
  return r;
}

export function rows(r: Replica): unknown[] {
  return r.store.db.prepare("SELECT * FROM items ORDER BY id").all();
}

export function hubOn(dir: string, nodeId = "hub", limits?: { maxRows?: number; maxBytes?: number }) {
  const replica = openItems(dir, nodeId);
  return new Hub(replica, { limits });
}

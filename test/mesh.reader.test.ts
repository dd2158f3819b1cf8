/**
 * StreamReader without Redis: a gap it cannot close (an entry refused for
 * good) is asked for again with doubling waits, not every gapRetryMs for
 * ever; progress closes it.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { encodeEntry, streamKey } from "../src/mesh/stream-entry.js";
import { StreamReader } from "../src/mesh/stream-reader.js";
import type { Change } from "../src/replica/change.js";
import { Replica } from "../src/replica/replica.js";
import { useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-reader-");
const opened: Array<{ close(): void }> = [];
afterEach(() => {
  for (const o of opened.splice(0).reverse()) o.close();
});

function change(table: string, seq: number): Change {
  return {
    table,
    bucket: "default",
    pk: [seq],
    op: "insert",
    columns: { name: `row ${seq}` },
    hlc: (BigInt(Date.now()) << 16n).toString(16).padStart(16, "0"),
    origin: "peer",
    seq,
  };
}

describe("StreamReader gaps", () => {
  it("asks again for a refused entry after gapRetryMs, then with doubling waits, until it moves", () => {
    const r = Replica.open(join(tempDir(), "r.db"), { nodeId: "me", ingestIntervalMs: 0 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
    r.track("items");
    const cursors = new CursorStore(r.store);
    opened.push(r, cursors);
    const reader = new StreamReader({ replica: r, cursors, atomic: true, prefix: "tw", gapRetryMs: 100 });
    reader.add("peer", "default");
    const key = streamKey("tw", "default", "peer");

    // A change the replica refuses (a key of two parts for a one-column key): a fill asked for at once.
    // (A table this replica lacks is no longer refused: the change waits in quarantine.)
    const refused = reader.handle(key, [
      ["1-0", encodeEntry("0", "1", [{ ...change("items", 1), pk: [1, 2] }])],
    ]);
    expect(refused.refused).toHaveLength(1);
    expect(refused.gaps.map((g) => g.reason)).toEqual(["refused"]);
    expect(reader.requests.splice(0)).toEqual([{ peer: "peer", bucket: "default", from: 0n }]);

    const t0 = reader.list()[0]!.gap!.requestedAt;
    const asked: number[] = [];
    for (let t = t0; t <= t0 + 1600; t += 10) {
      reader.retryGaps(t);
      if (reader.requests.splice(0).length > 0) asked.push(t - t0);
    }
    // 100 ms, then 200, 400 and 800 more.
    expect(asked).toEqual([100, 300, 700, 1500]);

    // The publisher's next entry is one this replica takes: the cursor moves, the gap closes.
    const good = reader.handle(key, [["2-0", encodeEntry("0", "2", [change("items", 2)])]]);
    expect(good.applied).toHaveLength(1);
    expect(reader.list()[0]!.gap).toBeNull();
    reader.retryGaps(t0 + 100_000);
    expect(reader.requests).toEqual([]);
  });
});

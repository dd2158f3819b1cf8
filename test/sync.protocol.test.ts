/**
 * Protocol v1: the schemas refuse malformed messages with a message naming
 * the field, accept well-formed ones, and fitBatch cuts batches to the row
 * and byte limits only between sequence numbers.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Change, changeSchema, isChange } from "../src/replica/change.js";
import {
  checkLimits,
  fitBatch,
  handshakeRequest,
  PROTOCOL_VERSION,
  ProtocolError,
  parse,
  pullRequest,
  pushRequest,
  versionMismatch,
} from "../src/sync/protocol.js";

function change(seq: number, extra = ""): Change {
  return {
    table: "items",
    pk: [seq],
    op: "insert",
    columns: { name: `item ${seq}${extra}` },
    hlc: "0000018f00000000",
    origin: "node-a",
    seq,
  };
}

describe("protocol v1 schemas", () => {
  it("accepts well-formed messages", () => {
    expect(
      parse(
        handshakeRequest,
        { nodeId: "a", protocolVersion: PROTOCOL_VERSION, buckets: ["default"], capabilities: ["live"] },
        "handshake",
      ),
    ).toMatchObject({ nodeId: "a", protocolVersion: 1 });
    expect(parse(pullRequest, { nodeId: "a", cursor: "0", buckets: ["b"], limit: 10 }, "pull").limit).toBe(
      10,
    );
    const values = [null, "t", 3, { int: "9007199254740993" }, { real: 1 }, { real: "-0" }, { blob: "AAE=" }];
    const changes = values.map((v, i) => ({ ...change(i + 1), columns: { v } }));
    expect(parse(pushRequest, { nodeId: "a", changes, cursor: "7" }, "push").changes).toHaveLength(7);
  });

  it.each([
    ["a missing field", { nodeId: "a", buckets: ["b"], capabilities: [] }, /protocolVersion/],
    ["a bad node id", { nodeId: "a b", protocolVersion: 1, buckets: ["b"] }, /nodeId: must be a node id/],
    ["no buckets", { nodeId: "a", protocolVersion: 1, buckets: [] }, /buckets/],
    ["a blank bucket", { nodeId: "a", protocolVersion: 1, buckets: [" "] }, /buckets\.0/],
    ["an unknown field", { nodeId: "a", protocolVersion: 1, buckets: ["b"], admin: true }, /admin/],
    ["not an object", [1, 2], /\(body\)/],
  ])("refuses a handshake with %s", (_what, body, pattern) => {
    expect(() => parse(handshakeRequest, body, "handshake")).toThrow(ProtocolError);
    expect(() => parse(handshakeRequest, body, "handshake")).toThrow(pattern);
  });

  it("refuses bad cursors, limits and changes", () => {
    const pull = { nodeId: "a", cursor: "0", buckets: ["b"], limit: 10 };
    expect(() => parse(pullRequest, { ...pull, cursor: "-1" }, "pull")).toThrow(/cursor: must be a sequence/);
    expect(() => parse(pullRequest, { ...pull, cursor: 5 }, "pull")).toThrow(/cursor/);
    expect(() => parse(pullRequest, { ...pull, limit: 0 }, "pull")).toThrow(/limit/);
    expect(() => parse(pullRequest, { ...pull, limit: "10" }, "pull")).toThrow(/limit/);
    const push = (c: unknown) => parse(pushRequest, { nodeId: "a", changes: [c], cursor: "1" }, "push");
    expect(() => push({ ...change(1), op: "upsert" })).toThrow(/changes\.0\.op/);
    expect(() => push({ ...change(1), hlc: "xyz" })).toThrow(/changes\.0\.hlc: must be 16 hex digits/);
    expect(() => push({ ...change(1), pk: [] })).toThrow(/changes\.0\.pk/);
    expect(() => push({ ...change(1), columns: { v: { real: "NaN" } } })).toThrow(/changes\.0\.columns/);
    expect(() => push({ ...change(1), columns: { v: [1] } })).toThrow(/changes\.0\.columns/);
    expect(() => push({ ...change(1), seq: 1.5 })).toThrow(/changes\.0\.seq/);
  });

  it("checks a change by hand exactly as its schema does: never a yes where the schema says no", () => {
    const hex = (n: number) =>
      fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: n, maxLength: n });
    const wire = fc.oneof(
      fc.constant(null),
      fc.string(),
      fc.maxSafeInteger(),
      fc.record({ int: fc.bigInt().map(String) }),
      fc.record({
        real: fc.oneof(fc.double({ noNaN: true }), fc.constantFrom("Infinity", "-Infinity", "-0")),
      }),
      fc.record({ blob: fc.base64String() }),
    );
    const valid = fc.record(
      {
        table: fc.string({ minLength: 1, maxLength: 20 }),
        bucket: fc.string({ minLength: 1, maxLength: 10 }).filter((b) => b.trim() !== ""),
        pk: fc.array(wire, { minLength: 1, maxLength: 3 }),
        op: fc.constantFrom("insert", "update", "delete"),
        columns: fc.dictionary(fc.string({ maxLength: 5 }), wire, { maxKeys: 4 }),
        hlc: hex(16),
        origin: fc.string({ unit: fc.constantFrom(..."ab9._:-"), minLength: 1, maxLength: 64 }),
        seq: fc.nat(),
      },
      { requiredKeys: ["table", "pk", "op", "columns", "hlc", "origin", "seq"] },
    );
    // Near misses: one field made wrong, by a value of any kind or one just past a bound.
    const spoil: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
      fc.record({ table: fc.oneof(fc.anything(), fc.constantFrom("", "t".repeat(201))) }),
      fc.record({ bucket: fc.oneof(fc.anything(), fc.constantFrom("", " ", "b".repeat(201))) }),
      fc.record({
        pk: fc.oneof(
          fc.anything(),
          fc.constant([]),
          fc.array(fc.constant(1), { minLength: 65, maxLength: 65 }),
        ),
      }),
      fc.record({ pk: fc.array(fc.oneof(wire, fc.anything()), { minLength: 1, maxLength: 2 }) }),
      fc.record({ op: fc.oneof(fc.anything(), fc.constant("upsert")) }),
      fc.record({
        columns: fc.oneof(fc.anything(), fc.dictionary(fc.string(), fc.oneof(wire, fc.anything()))),
      }),
      fc.record({ hlc: fc.oneof(fc.anything(), hex(15), hex(17), fc.constant("0000018F00000000")) }),
      fc.record({ origin: fc.oneof(fc.anything(), fc.constantFrom("", "a b", "o".repeat(65))) }),
      fc.record({ seq: fc.oneof(fc.anything(), fc.constantFrom(-1, 1.5, 2 ** 53, Number.NaN, "1")) }),
      fc.dictionary(fc.string(), fc.anything(), { minKeys: 1, maxKeys: 2 }),
    );
    const arb = fc.oneof(
      valid,
      fc.tuple(valid, spoil).map(([c, bad]) => ({ ...c, ...bad })),
      fc.anything(),
    );
    let yes = 0;
    let no = 0;
    fc.assert(
      fc.property(arb, (v) => {
        const schema = changeSchema.safeParse(v).success;
        if (isChange(v)) {
          yes++;
          expect(schema).toBe(true);
        } else if (!schema) no++;
      }),
      { numRuns: 3000 },
    );
    // Both sides of the check were exercised, not only the refusals.
    expect(yes).toBeGreaterThan(500);
    expect(no).toBeGreaterThan(500);
    expect(isChange({ ...change(2), bucket: "b", pk: [{ int: "9007199254740993" }, "k"] })).toBe(true);
  });

  it("words a version mismatch with both versions", () => {
    expect(versionMismatch(2)).toBe("protocol version 2 is not supported: this hub speaks version 1");
  });

  it("checks configured limits", () => {
    expect(checkLimits({ maxRows: 5 })).toEqual({ maxRows: 5, maxBytes: 4 * 1024 * 1024 });
    expect(() => checkLimits({ maxBytes: 0 })).toThrow(/limits\.maxBytes must be a positive integer/);
    expect(() => checkLimits({ maxRows: 1.5 })).toThrow(/limits\.maxRows/);
  });
});

describe("fitBatch", () => {
  const batch = [1, 2, 3, 4, 5].map((s) => change(s));

  it("keeps a batch within the limits whole", () => {
    expect(fitBatch(batch, { maxRows: 5, maxBytes: 1e6 })).toEqual({ changes: batch, cut: false });
  });

  it("cuts by rows and by bytes", () => {
    expect(fitBatch(batch, { maxRows: 2, maxBytes: 1e6 }).changes.map((c) => c.seq)).toEqual([1, 2]);
    const one = Buffer.byteLength(JSON.stringify(batch[0]));
    const cut = fitBatch(batch, { maxRows: 100, maxBytes: 3 * (one + 1) + 2 });
    expect(cut.changes.map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(cut.cut).toBe(true);
  });

  it("never splits one sequence number, and always keeps the first", () => {
    const shared = [change(1), { ...change(2), pk: [20] }, { ...change(2), pk: [21] }, change(3)];
    expect(fitBatch(shared, { maxRows: 2, maxBytes: 1e6 }).changes.map((c) => c.seq)).toEqual([1]);
    const big = [change(1, "x".repeat(1000)), change(2)];
    expect(fitBatch(big, { maxRows: 10, maxBytes: 10 }).changes.map((c) => c.seq)).toEqual([1]);
    expect(fitBatch(shared.slice(1), { maxRows: 1, maxBytes: 10 }).changes).toHaveLength(2);
  });

  it("keeps whole exactly the batches whose JSON fits, whatever their text (its size bound is never short)", () => {
    const wire = fc.oneof(
      fc.constant(null),
      fc.string({ unit: "binary" }),
      fc.maxSafeInteger(),
      fc.record({ int: fc.bigInt().map(String) }),
      fc.record({
        real: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant("-Infinity")),
      }),
      fc.record({ blob: fc.uint8Array().map((a) => Buffer.from(a).toString("base64")) }),
    );
    const changeArb = fc.record({
      table: fc.string({ unit: "binary", minLength: 1 }),
      bucket: fc.string({ unit: "binary", minLength: 1 }),
      pk: fc.array(wire, { minLength: 1, maxLength: 3 }),
      op: fc.constantFrom("insert" as const, "update" as const, "delete" as const),
      columns: fc.dictionary(fc.string({ unit: "binary" }), wire),
      hlc: fc.constant("0123456789abcdef"),
      origin: fc.constant("node-1"),
      seq: fc.maxSafeInteger(),
    });
    fc.assert(
      fc.property(fc.array(changeArb, { minLength: 1, maxLength: 8 }), (changes) => {
        const seqd = changes.map((c, i) => ({ ...c, seq: i + 1 })) as Change[];
        const exact = Buffer.byteLength(JSON.stringify(seqd));
        expect(fitBatch(seqd, { maxRows: 100, maxBytes: exact }).cut).toBe(false);
        if (seqd.length > 1) expect(fitBatch(seqd, { maxRows: 100, maxBytes: exact - 1 }).cut).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("the library entry points", () => {
  it("export the sync API by the names in DESIGN.md, from tidewire/sync and tidewire/hub", async () => {
    const sync = await import("../src/sync/index.js");
    const hub = await import("../src/hub/index.js");
    const lib = { ...sync, ...hub } as Record<string, unknown>;
    for (const name of [
      "SyncManager",
      "MemoryTransport",
      "HttpTransport",
      "Hub",
      "ProtocolError",
      "HubRefusedError",
    ]) {
      expect(typeof lib[name]).toBe("function");
    }
    expect(sync.PROTOCOL_VERSION).toBe(1);
  });
});

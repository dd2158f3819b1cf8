/**
 * The mesh's stream entries and reader cursors: what is encoded decodes to
 * the same thing (property), and anything else is refused naming the field.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeEntry,
  decodeWants,
  encodeEntry,
  encodeWants,
  formatPosition,
  membersKey,
  parsePosition,
  streamKey,
  wantsKey,
} from "../src/mesh/stream-entry.js";
import type { Change } from "../src/replica/change.js";
import { ProtocolError } from "../src/sync/protocol.js";

const seq = fc.bigInt({ min: 0n, max: 10n ** 18n - 1n });
const wire = fc.oneof(
  fc.constant(null),
  fc.string({ maxLength: 10 }),
  fc.maxSafeInteger(),
  fc.record({ real: fc.double({ noNaN: true, noDefaultInfinity: true }) }),
  fc.record({ int: fc.bigInt().map(String) }),
  fc.record({ blob: fc.base64String({ maxLength: 12 }) }),
);
const change: fc.Arbitrary<Change> = fc.record({
  table: fc.constantFrom("items", "tags", "a b"),
  bucket: fc.constantFrom("default", "b1"),
  pk: fc.array(wire, { minLength: 1, maxLength: 3 }),
  op: fc.constantFrom("insert" as const, "update" as const, "delete" as const),
  columns: fc.dictionary(fc.constantFrom("name", "qty", "x"), wire),
  hlc: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((h) => h.toString(16).padStart(16, "0")),
  origin: fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/),
  seq: fc.nat(),
});

describe("stream entries", () => {
  it("decode what encode wrote, for any changes and cursor range", () => {
    fc.assert(
      fc.property(seq, seq, fc.array(change, { maxLength: 5 }), (a, b, changes) => {
        const [since, cursor] = a <= b ? [a, b] : [b, a];
        const e = decodeEntry(encodeEntry(String(since), String(cursor), changes));
        expect(e.since).toBe(since);
        expect(e.cursor).toBe(cursor);
        expect(e.changes).toEqual(JSON.parse(JSON.stringify(changes)));
      }),
    );
  });

  it("refuse missing, unknown or repeated fields, another version, bad JSON, bad changes, a backward range", () => {
    const good = encodeEntry("1", "2", []);
    const bad: string[][] = [
      [],
      ["garbage", "1"],
      good.slice(0, 6),
      [...good, "extra", "1"],
      [...good, "v", "1"],
      ["v", "2", ...good.slice(2)],
      ["v", "1", "since", "-1", "cursor", "2", "changes", "[]"],
      ["v", "1", "since", "3", "cursor", "2", "changes", "[]"],
      ["v", "1", "since", "0", "cursor", "2", "changes", "[{"],
      ["v", "1", "since", "0", "cursor", "2", "changes", '[{"table":"t"}]'],
      ["v", "1", "since", "0", "cursor", "2", "changes", "{}"],
    ];
    for (const fields of bad)
      expect(() => decodeEntry(fields), JSON.stringify(fields)).toThrow(ProtocolError);
  });

  it("give every (bucket, node) its own keys: no name spells another's stream, wants or members key", () => {
    const name = fc.string({
      unit: fc.constantFrom("a", "b", ":", "%", "3", "A", "s"),
      minLength: 1,
      maxLength: 8,
    });
    const names = fc.oneof(name, fc.constantFrom("members", "wants", "a:wants", "%3A", ":"));
    fc.assert(
      fc.property(names, names, names, names, (b1, n1, b2, n2) => {
        const keys = (b: string, n: string) => [
          streamKey("tw", b, n),
          wantsKey("tw", b, n),
          membersKey("tw", b),
        ];
        const [s1, w1, m1] = keys(b1, n1);
        const [s2, w2, m2] = keys(b2, n2);
        expect(s1 === s2).toBe(b1 === b2 && n1 === n2);
        expect(w1 === w2).toBe(b1 === b2 && n1 === n2);
        expect(m1 === m2).toBe(b1 === b2);
        for (const k of [w2, m2]) expect(s1).not.toBe(k);
        expect(w1).not.toBe(m2);
      }),
      { numRuns: 2000 },
    );
    // Names without ':' or '%' keep the keys they always had.
    expect(streamKey("tw", "default", "node-a")).toBe("tw:default:node-a");
    expect(streamKey("tw", "t:1", "n%")).toBe("tw:t%3A1:n%25");
  });

  it("wants entries and reader positions round-trip; other cursor values are not positions", () => {
    fc.assert(
      fc.property(seq, fc.bigInt({ min: 0n, max: 2n ** 63n }), fc.nat(), (from, ms, n) => {
        expect(decodeWants(encodeWants(from, "node-1"))).toEqual({ from, by: "node-1" });
        const p = { streamId: `${ms}-${n}`, cursor: from };
        expect(parsePosition(formatPosition(p))).toEqual(p);
      }),
    );
    for (const v of ["0", "5821", "1-0", "1-0/", "/5", "1-0/05", "a-0/1"])
      expect(parsePosition(v)).toBeNull();
    expect(() => decodeWants(["from", "x", "by", "n"])).toThrow(ProtocolError);
  });
});

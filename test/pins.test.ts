/**
 * Pins on real files: PinStore round trips byte for byte (empty, small,
 * several MB, random bytes), stores one file per content, refuses bytes that
 * do not match their hash or exceed the limit and leaves nothing behind;
 * malformed hashes are refused; declared columns name the pins referenced
 * and missing; garbage collection keeps referenced and young pins and
 * deletes unreferenced old ones.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, renameSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import { PinMismatchError, PinNotFoundError, PinTooLargeError } from "../src/pins/errors.js";
import { PinStore } from "../src/pins/pin-store.js";
import { Pins } from "../src/pins/pins.js";
import { openStore, type Store } from "../src/store.js";
import { invalidArgument, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-pins-");
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

function openPins(options: { maxBytes?: number } = {}) {
  const store = openStore(join(tempDir(), "app.db"));
  stores.push(store);
  store.db.exec("CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, blob TEXT)");
  return new Pins(store, options);
}

/** Every file under the pins folder, temp files included. */
function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

/** A stream that hands `bytes` over in chunks of `size`. */
function chunked(bytes: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) parts.push(bytes.subarray(at, at + size));
  return Readable.from(parts);
}

describe("PinStore", () => {
  it("keeps a pin at <db>.pins/sha256/<2 hex>/<hash> and reads it back byte for byte", async () => {
    const { blobs, store } = openPins();
    for (const bytes of [Buffer.alloc(0), Buffer.from("hello pins"), randomBytes(5 * 1024 * 1024 + 17)]) {
      const put = await blobs.put(chunked(bytes, 64 * 1024));
      expect(put).toEqual({ hash: sha256(bytes), size: bytes.length });
      expect(blobs.path(put.hash)).toBe(join(`${store.path}.pins`, "sha256", put.hash.slice(0, 2), put.hash));
      expect(blobs.has(put.hash)).toBe(true);
      expect(blobs.size(put.hash)).toBe(bytes.length);
      expect((await blobs.read(put.hash)).equals(bytes)).toBe(true);
    }
    expect(files(join(blobs.root, "tmp"))).toEqual([]);
  });

  it("round-trips random bytes, given whole or streamed in random chunks", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"));
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 20_000 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.boolean(),
        async (array, chunk, whole) => {
          const bytes = Buffer.from(array);
          const put = await blobs.put(whole ? bytes : chunked(bytes, chunk));
          expect(put.hash).toBe(sha256(bytes));
          expect((await blobs.read(put.hash)).equals(bytes)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("stores the same content once, under one name", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"));
    const a = await blobs.put("same content");
    const b = await blobs.put(Readable.from([Buffer.from("same "), Buffer.from("content")]));
    expect(b).toEqual(a);
    expect((await blobs.list()).map((p) => p.hash)).toEqual([a.hash]);
    expect(files(blobs.root)).toEqual([blobs.path(a.hash)]);
  });

  it("putExpecting stores bytes that match and refuses a mismatch, leaving no file", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"));
    const right = Buffer.from("the right bytes");
    const hash = sha256(right);
    const err = await blobs
      .putExpecting(hash, Readable.from([Buffer.from("the wrong bytes")]))
      .catch((e) => e);
    expect(err).toBeInstanceOf(PinMismatchError);
    expect(err.message).toContain(hash);
    expect(blobs.has(hash)).toBe(false);
    expect(files(blobs.root)).toEqual([]);
    expect(await blobs.putExpecting(hash, right)).toEqual({ hash, size: right.length });
    expect((await blobs.read(hash)).equals(right)).toBe(true);
  });

  it("refuses a pin over maxBytes while it streams, leaving no file", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"), { maxBytes: 1000 });
    await expect(blobs.put(chunked(randomBytes(1001), 100))).rejects.toBeInstanceOf(PinTooLargeError);
    expect(files(blobs.root)).toEqual([]);
    expect((await blobs.put(randomBytes(1000))).size).toBe(1000);
  });

  it("refuses malformed hashes, and says when a pin is absent", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"));
    const upper = sha256("x").toUpperCase();
    for (const bad of ["", "abc", upper, `${sha256("x")}0`, "../../etc/passwd", 42, null]) {
      invalidArgument(() => blobs.has(bad as string));
      invalidArgument(() => blobs.open(bad as string));
      invalidArgument(() => blobs.delete(bad as string));
      await expect(blobs.putExpecting(bad as string, "x")).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(() => blobs.open(sha256("absent"))).toThrow(PinNotFoundError);
    expect(blobs.delete(sha256("absent"))).toBe(false);
    expect(blobs.size(sha256("absent"))).toBe(null);
    invalidArgument(() => new PinStore(join(tempDir(), "p"), { maxBytes: -1 }));
    expect(files(blobs.root)).toEqual([]);
  });

  it("delete removes a pin, and a stream opened before still reads it whole", async () => {
    const blobs = new PinStore(join(tempDir(), "pins"));
    const bytes = randomBytes(300_000);
    const { hash } = await blobs.put(bytes);
    const stream = blobs.open(hash);
    expect(blobs.delete(hash)).toBe(true);
    expect(blobs.has(hash)).toBe(false);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });
});

describe("pin references", () => {
  it("declared columns name the pins referenced, and those missing here", async () => {
    const pins = openPins();
    const here = await pins.blobs.put("present");
    const away = sha256("only on a peer");
    const insert = pins.store.db.prepare("INSERT INTO docs (title, blob) VALUES (?, ?)");
    insert.run("a", here.hash);
    insert.run("b", away);
    insert.run("c", null);
    insert.run("d", "not a hash");
    insert.run("e", away.toUpperCase());
    expect(pins.referenced()).toEqual(new Set());
    expect(pins.declare("docs", "blob")).toBe(true);
    expect(pins.declare("docs", "blob")).toBe(false);
    expect(pins.references.columns()).toMatchObject([{ table: "docs", column: "blob" }]);
    expect(pins.referenced()).toEqual(new Set([here.hash, away]));
    expect(pins.missing()).toEqual([away]);
    expect(pins.undeclare("docs", "blob")).toBe(true);
    expect(pins.undeclare("docs", "blob")).toBe(false);
    expect(pins.missing()).toEqual([]);
  });

  it("quotes identifiers: odd table and column names work", async () => {
    const pins = openPins();
    pins.store.db.exec(`CREATE TABLE "we""ird table" ("select" TEXT, "a b" TEXT)`);
    pins.store.db.prepare(`INSERT INTO "we""ird table" VALUES (?, ?)`).run(sha256("1"), sha256("2"));
    pins.declare('we"ird table', "select");
    pins.declare('we"ird table', "a b");
    expect(pins.missing()).toEqual([sha256("1"), sha256("2")].sort());
  });

  it("refuses unknown tables and columns, tidewire's own tables, and bad names, recording nothing", () => {
    const pins = openPins();
    invalidArgument(() => pins.declare("nope", "blob"));
    invalidArgument(() => pins.declare("docs", "nope"));
    invalidArgument(() => pins.declare("tw_jobs", "payload"));
    invalidArgument(() => pins.declare("", "blob"));
    invalidArgument(() => pins.declare("docs", 7 as unknown as string));
    expect(pins.references.columns()).toEqual([]);
  });

  it("a declared table that is gone makes referenced() throw, naming it, rather than answer empty", () => {
    const pins = openPins();
    pins.declare("docs", "blob");
    pins.store.db.exec("DROP TABLE docs");
    expect(() => pins.referenced()).toThrow(/docs\.blob/);
  });
});

describe("garbage collection", () => {
  const HOUR = 3_600_000;

  it("keeps referenced and young pins, deletes unreferenced old ones and old temp files", async () => {
    const pins = openPins();
    pins.declare("docs", "blob");
    const old = (Date.now() - 48 * HOUR) / 1000;
    const referencedOld = await pins.blobs.put("referenced, old");
    const unreferencedOld = await pins.blobs.put("unreferenced, old");
    const unreferencedYoung = await pins.blobs.put("unreferenced, young");
    for (const p of [referencedOld, unreferencedOld]) utimesSync(pins.blobs.path(p.hash), old, old);
    pins.store.db.prepare("INSERT INTO docs (title, blob) VALUES ('x', ?)").run(referencedOld.hash);
    const crashed = await pins.blobs.put("to become a temp file");
    // A write that crashed mid-way leaves only a temp file.
    const tmp = join(pins.blobs.root, "tmp", "deadbeef.part");
    renameSync(pins.blobs.path(crashed.hash), tmp);
    utimesSync(tmp, old, old);

    const result = await pins.collect({ graceMs: 24 * HOUR });
    expect(result).toMatchObject({
      deleted: [unreferencedOld.hash],
      bytesFreed: unreferencedOld.size,
      kept: 2,
      tempFilesRemoved: 1,
    });
    expect(pins.blobs.has(referencedOld.hash)).toBe(true);
    expect(pins.blobs.has(unreferencedYoung.hash)).toBe(true);
    expect(pins.blobs.has(unreferencedOld.hash)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
  });

  it("storing a pin again makes it young again, so a new reference is not collected from under it", async () => {
    const pins = openPins();
    pins.declare("docs", "blob");
    const p = await pins.blobs.put("again");
    const old = (Date.now() - 48 * HOUR) / 1000;
    utimesSync(pins.blobs.path(p.hash), old, old);
    await pins.blobs.put("again");
    expect((await pins.collect({ graceMs: 24 * HOUR })).deleted).toEqual([]);
    expect(pins.blobs.has(p.hash)).toBe(true);
  });

  it("holds the write lock from reading references to deleting, so a row naming an old pin cannot slip in between", async () => {
    const pins = openPins();
    pins.declare("docs", "blob");
    const p = await pins.blobs.put("old, about to be referenced");
    const old = (Date.now() - 48 * HOUR) / 1000;
    utimesSync(pins.blobs.path(p.hash), old, old);
    // Another program references the pin at the worst moment: after the references were read,
    // just before the unlink (info() is the last look at the file before it).
    const other = openStore(pins.store.path, { busyTimeoutMs: 0 });
    stores.push(other);
    const insert = other.db.prepare("INSERT INTO docs (title, blob) VALUES ('late', ?)");
    let referencedMeanwhile = false;
    const info = pins.blobs.info.bind(pins.blobs);
    pins.blobs.info = (hash) => {
      try {
        insert.run(p.hash);
        referencedMeanwhile = true;
      } catch (err) {
        expect((err as { code?: string }).code).toMatch(/^SQLITE_BUSY/);
      }
      return info(hash);
    };
    const result = await pins.collect({ graceMs: 24 * HOUR });
    // Either the pin is kept for the row that got in, or no row got in while it went.
    if (referencedMeanwhile) expect(pins.blobs.has(p.hash)).toBe(true);
    else expect(result.deleted).toEqual([p.hash]);
    expect(referencedMeanwhile).toBe(false);
  });

  it("collects nothing when no column is declared, and says why", async () => {
    const pins = openPins();
    const p = await pins.blobs.put("undeclared");
    const result = await pins.collect({ graceMs: 0, now: Date.now() + HOUR });
    expect(result.deleted).toEqual([]);
    expect(result.skipped).toMatch(/no column is declared/);
    expect(pins.blobs.has(p.hash)).toBe(true);
    await expect(pins.collect({ graceMs: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

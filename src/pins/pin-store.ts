/**
 * PinStore: content-addressed blobs kept as files, named by their sha256.
 *
 * Contract: a pin lives at `<root>/sha256/<first 2 hex>/<64 hex>`; beside a
 * database the root is `<db>.pins`. Bytes are streamed to a temp file under
 * `<root>/tmp` (same file system, so the rename is atomic) while they are
 * hashed and counted; the temp file is fsynced, renamed to its name, and the
 * folder fsynced. A pin is therefore whole or absent: a crash mid-write
 * leaves only a temp file, which `sweepTemp` removes later. `putExpecting`
 * refuses (PinMismatchError) bytes that do not hash to the hash they were
 * sent as, and `maxBytes` bounds any pin (PinTooLargeError); a refusal
 * deletes the temp file and stores nothing. Storing content that is already
 * there renames over it, which also makes the file young again, so a pin
 * being referenced anew is not collected from under its writer.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, openSync, statSync, unlinkSync } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { InvalidArgumentError } from "../errors.js";
import { checkInteger } from "../validate.js";
import { checkPinHash, PIN_HASH, PinMismatchError, PinNotFoundError, PinTooLargeError } from "./errors.js";

export const DEFAULT_MAX_PIN_BYTES = 1024 ** 3;

export interface PinStoreOptions {
  /** Largest pin accepted, in bytes (default 1 GiB). */
  maxBytes?: number;
}

export interface PinInfo {
  hash: string;
  size: number;
  /** Epoch ms the file was last written (the garbage collector's grace runs from it). */
  modifiedAt: number;
}

export interface PutResult {
  hash: string;
  size: number;
}

export type PinData = Uint8Array | string | Readable | AsyncIterable<Uint8Array>;

export class PinStore {
  readonly root: string;
  readonly maxBytes: number;
  private readonly blobs: string;
  private readonly tmp: string;

  constructor(root: string, options: PinStoreOptions = {}) {
    if (typeof root !== "string" || root === "")
      throw new InvalidArgumentError("root", "must be a folder path");
    this.root = root;
    this.maxBytes = checkInteger("maxBytes", options.maxBytes ?? DEFAULT_MAX_PIN_BYTES, 0);
    this.blobs = join(root, "sha256");
    this.tmp = join(root, "tmp");
  }

  /** The pins of the database at `dbPath`: `<db>.pins`. */
  static beside(dbPath: string, options?: PinStoreOptions): PinStore {
    if (dbPath === ":memory:") {
      throw new InvalidArgumentError(
        "store",
        "an in-memory database has no folder for pins; give PinStore one",
      );
    }
    return new PinStore(`${dbPath}.pins`, options);
  }

  /** Where the pin `hash` is (or would be) kept. */
  path(hash: string): string {
    checkPinHash("hash", hash);
    return join(this.blobs, hash.slice(0, 2), hash);
  }

  /** Stores `data` under the hash of its bytes. */
  async put(data: PinData): Promise<PutResult> {
    return this.write(data, null);
  }

  /** Stores `data` only if its bytes hash to `hash`; otherwise throws PinMismatchError. */
  async putExpecting(hash: string, data: PinData): Promise<PutResult> {
    checkPinHash("hash", hash);
    return this.write(data, hash);
  }

  has(hash: string): boolean {
    return this.size(hash) !== null;
  }

  /** The pin's size in bytes, or null when it is not here. */
  size(hash: string): number | null {
    return this.info(hash)?.size ?? null;
  }

  /** The pin's size and age, or null when it is not here. */
  info(hash: string): PinInfo | null {
    try {
      const s = statSync(this.path(hash));
      return { hash, size: s.size, modifiedAt: s.mtimeMs };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * A stream of the pin's bytes. The file is opened now, so a pin that is
   * absent throws PinNotFoundError here, and one deleted meanwhile still reads whole.
   */
  open(hash: string): Readable {
    let fd: number;
    try {
      fd = openSync(this.path(hash), "r");
    } catch (err) {
      if (isNotFound(err)) throw new PinNotFoundError(hash);
      throw err;
    }
    return createReadStream("", { fd });
  }

  async read(hash: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.open(hash)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Removes the pin; false when it was not here. */
  delete(hash: string): boolean {
    try {
      unlinkSync(this.path(hash));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Every pin here, by hash. Files that are not named like a pin are left out. */
  async list(): Promise<PinInfo[]> {
    const out: PinInfo[] = [];
    for (const dir of await names(this.blobs)) {
      if (!/^[0-9a-f]{2}$/.test(dir)) continue;
      for (const name of await names(join(this.blobs, dir))) {
        if (!PIN_HASH.test(name) || !name.startsWith(dir)) continue;
        try {
          const s = await stat(join(this.blobs, dir, name));
          out.push({ hash: name, size: s.size, modifiedAt: s.mtimeMs });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
    }
    return out.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  }

  /** Deletes temp files (left by writes that crashed) older than `olderThanMs`; returns how many. */
  async sweepTemp(olderThanMs: number, now = Date.now()): Promise<number> {
    let removed = 0;
    for (const name of await names(this.tmp)) {
      const file = join(this.tmp, name);
      try {
        if (now - (await stat(file)).mtimeMs < olderThanMs) continue;
        await unlink(file);
        removed++;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return removed;
  }

  private async write(data: PinData, expected: string | null): Promise<PutResult> {
    const source = toIterable(data);
    await mkdir(this.tmp, { recursive: true });
    const tmp = join(this.tmp, `${randomBytes(8).toString("hex")}.part`);
    const fh = await open(tmp, "wx", 0o644);
    let closed = false;
    try {
      const digest = createHash("sha256");
      let size = 0;
      for await (const chunk of source) {
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Uint8Array);
        size += bytes.byteLength;
        if (size > this.maxBytes) throw new PinTooLargeError(this.maxBytes);
        digest.update(bytes);
        await writeAll(fh, bytes);
      }
      const hash = digest.digest("hex");
      if (expected !== null && hash !== expected) throw new PinMismatchError(expected, hash);
      await fh.sync();
      await fh.close();
      closed = true;
      const dir = join(this.blobs, hash.slice(0, 2));
      await mkdir(dir, { recursive: true });
      await rename(tmp, join(dir, hash));
      // The rename is durable once the folders holding the new names are.
      await syncFolder(dir);
      await syncFolder(this.blobs);
      return { hash, size };
    } catch (err) {
      if (!closed) await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }
}

function toIterable(data: PinData): AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string> {
  if (typeof data === "string" || data instanceof Uint8Array) return [data];
  if (data !== null && typeof data === "object" && Symbol.asyncIterator in data) return data;
  throw new InvalidArgumentError("data", "must be bytes, a string or a readable stream");
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, at, bytes.byteLength - at);
    at += bytesWritten;
  }
}

async function syncFolder(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string }).code === "ENOENT";
}

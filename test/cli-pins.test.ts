/**
 * `tidewire pins`, run as the installed bin runs (`node dist/cli/main.js`) on
 * real files: add, get (to a file and to stdout), list, declare and collect,
 * in text and --json, and the CLI contract: exit 0 on success, 1 for an
 * absent pin or database, 2 for a malformed hash or option.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { Pins } from "../src/pins/pins.js";
import { openStore } from "../src/store.js";
import { type Run, runNode, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-pins-");

beforeAll(() => {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

const tidewire = (args: string[], cwd: string): Promise<Run> => runNode([CLI, ...args], cwd);
const json = (run: Run) => JSON.parse(run.stdout);

function setup() {
  const dir = tempDir();
  const db = join(dir, "app.db");
  const store = openStore(db);
  store.db.exec("CREATE TABLE docs (id INTEGER PRIMARY KEY, blob TEXT)");
  store.close();
  const file = join(dir, "photo.bin");
  const bytes = randomBytes(100_000);
  writeFileSync(file, bytes);
  return { dir, db, file, bytes, hash: createHash("sha256").update(bytes).digest("hex") };
}

describe("tidewire pins", () => {
  it("add prints the hash; get writes the bytes back, to a file or to stdout; list shows the pin", async () => {
    const { dir, file, bytes, hash } = setup();
    const add = await tidewire(["pins", "add", "app.db", file], dir);
    expect(add).toMatchObject({ code: 0, stdout: `${hash}\n`, stderr: "" });
    expect(json(await tidewire(["pins", "add", "app.db", file, "--json"], dir))).toEqual({
      ok: true,
      hash,
      size: bytes.length,
    });

    const got = await tidewire(["pins", "get", "app.db", hash, "--out", "copy.bin", "--json"], dir);
    expect(got.code).toBe(0);
    expect(json(got)).toMatchObject({ ok: true, hash, size: bytes.length });
    expect(readFileSync(join(dir, "copy.bin")).equals(bytes)).toBe(true);
    const raw = spawnSync(process.execPath, [CLI, "pins", "get", "app.db", hash], { cwd: dir });
    expect(raw.status).toBe(0);
    expect(raw.stdout.equals(bytes)).toBe(true);

    const list = await tidewire(["pins", "list", "app.db", "--json"], dir);
    expect(json(list).pins).toMatchObject([{ hash, size: bytes.length }]);
    const text = await tidewire(["pins", "list", "app.db"], dir);
    expect(text.stdout).toMatch(new RegExp(`^HASH\\s+SIZE\\s+MODIFIED\\n${hash}\\s+${bytes.length}\\s`));
  });

  it("collect deletes unreferenced old pins once a column is declared, and keeps the rest", async () => {
    const { dir, db, file, hash } = setup();
    await tidewire(["pins", "add", "app.db", file], dir);
    const old = (Date.now() - 2 * 86_400_000) / 1000;
    utimesSync(join(`${db}.pins`, "sha256", hash.slice(0, 2), hash), old, old);
    const skipped = await tidewire(["pins", "collect", "app.db"], dir);
    expect(skipped).toMatchObject({ code: 0 });
    expect(skipped.stdout).toMatch(/nothing collected: no column is declared/);

    expect((await tidewire(["pins", "declare", "app.db", "docs", "blob"], dir)).code).toBe(0);
    const kept = json(await tidewire(["pins", "collect", "app.db", "--grace", "3d", "--json"], dir));
    expect(kept).toMatchObject({ ok: true, deleted: [], kept: 1, graceMs: 3 * 86_400_000 });
    const collected = await tidewire(["pins", "collect", "app.db"], dir);
    expect(collected.stdout).toBe("deleted 1 unreferenced pin (100000 bytes), kept 0\n");
    const store = openStore(db);
    expect(new Pins(store).blobs.has(hash)).toBe(false);
    store.close();
  });

  it("exits 2 for a malformed hash or option, 1 for an absent pin, file or database", async () => {
    const { dir, hash } = setup();
    const cases: Array<[string[], number, RegExp]> = [
      [["pins", "get", "app.db", "xyz"], 2, /hash: must be a sha256 hash/],
      [["pins", "get", "app.db", hash, "--json"], 2, /--json: needs --out/],
      [["pins", "collect", "app.db", "--grace", "soon"], 2, /Expected a duration/],
      [["pins", "declare", "app.db", "nope", "blob"], 2, /no table "nope"/],
      [["pins", "frobnicate", "app.db"], 2, /unknown command 'frobnicate'/],
      [["pins", "get", "app.db", hash], 1, /no pin [0-9a-f]{64}/],
      [["pins", "add", "app.db", "missing.bin"], 1, /no file at/],
      [["pins", "list", "nope.db"], 1, /no database at/],
    ];
    const runs = await Promise.all(cases.map(([args]) => tidewire(args, dir)));
    for (const [i, [args, code, message]] of cases.entries()) {
      const run = runs[i]!;
      expect({ args, code: run.code }).toEqual({ args, code });
      expect(run.stderr).toMatch(/^tidewire: /);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/^\s+at /m);
    }
    expect(existsSync(join(dir, "nope.db"))).toBe(false);
    const help = await tidewire(["pins", "--help"], dir);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tidewire pins <command> <db>/);
    expect(help.stdout).toMatch(/add <db> <file>/);
  });
});

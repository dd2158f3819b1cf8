/**
 * A process killed with SIGKILL while it applies a batch leaves the whole
 * batch or none of it: rows, log and clock move together, and capture is not
 * left suppressed. Real child processes on a real file.
 */
import { spawn } from "node:child_process";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { Replica } from "../src/replica/replica.js";
import { useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURE = join(ROOT, "test/fixtures/replica-apply.ts");
const ROWS = 20_000;
const tempDir = useTempDirs("tidewire-crash-");

const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)";

/** Runs the fixture; kills it `delayMs` after it says "applying". Resolves with what it printed. */
function applyAndKill(
  db: string,
  changes: string,
  delayMs: number,
): Promise<{ out: string; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, db, changes], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      if (d.includes("applying")) setTimeout(() => child.kill("SIGKILL"), delayMs);
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code !== 0 && signal !== "SIGKILL") reject(new Error(`fixture failed (${code}): ${err}`));
      else resolve({ out, killed: signal === "SIGKILL" });
    });
  });
}

function state(db: string): { rows: number; entries: number; suppress: number; seq: number } {
  const d = new Database(db, { readonly: true });
  try {
    return {
      rows: d.prepare("SELECT count(*) FROM items").pluck().get() as number,
      entries: d.prepare("SELECT count(*) FROM tw_log").pluck().get() as number,
      suppress: d.prepare("SELECT suppress FROM tw_clock").pluck().get() as number,
      seq: d.prepare("SELECT seq FROM tw_clock").pluck().get() as number,
    };
  } finally {
    d.close();
  }
}

describe("SIGKILL during apply", () => {
  it("leaves the whole batch or none of it", async () => {
    const dir = tempDir();
    const source = Replica.open(join(dir, "source.db"), { nodeId: "source" });
    source.store.db.exec(SCHEMA);
    source.track("items");
    const insert = source.store.db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
    source.store.write(() => {
      for (let i = 1; i <= ROWS; i++) insert.run(i, `item ${i}`, i, "x".repeat(40));
    });
    const changes = join(dir, "changes.json");
    writeFileSync(changes, JSON.stringify(source.changesSince(0, { limit: ROWS }).changes));
    source.close();

    const template = join(dir, "template.db");
    const victim = Replica.open(template, { nodeId: "victim" });
    victim.store.db.exec(SCHEMA);
    victim.track("items");
    victim.close();
    const empty = state(template);

    let midApply = 0;
    for (const delayMs of [5, 40, 120, 250]) {
      const db = join(dir, `victim-${delayMs}.db`);
      copyFileSync(template, db);
      const { out, killed } = await applyAndKill(db, changes, delayMs);
      const after = state(db);
      if (killed && !out.includes("done")) midApply++;
      expect(after.suppress).toBe(0);
      if (after.rows === 0) expect(after).toEqual(empty);
      // One row entry per row: it stands for the columns, whose values are in the table.
      else expect(after).toMatchObject({ rows: ROWS, entries: ROWS, seq: ROWS });
    }
    // At least one kill must have landed inside the apply for the test to mean anything.
    expect(midApply).toBeGreaterThan(0);
  });
});

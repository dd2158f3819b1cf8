/**
 * D1Target: `d1:NAME`, a Cloudflare D1 database through the user's own
 * `wrangler d1 execute NAME --file …` (found on PATH or in
 * node_modules/.bin), with --local, --remote and --config passed through.
 *
 * Contract: a payload is one SQL file, which D1 runs as one transaction. Its
 * first write is a plain INSERT of the sync key into the history table: when
 * the key is already there, that INSERT fails, D1 rolls the whole file back,
 * and the payload counts as applied ("duplicate") — the check and the apply
 * are one atomic step. Values are rendered by `sqlLiteral`, the only way a
 * value becomes SQL text. The temporary folder holding the file is removed
 * on every path.
 */
import { execFile } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { finished } from "node:stream/promises";
import { InvalidArgumentError } from "../../errors.js";
import { quoteIdent } from "../../replica/schema.js";
import { checkObject } from "../../validate.js";
import type { Capture } from "../capture.js";
import { type CopyJob, missingColumns, sqliteIndexSql } from "../copy-job.js";
import type { Payload } from "../payload.js";
import {
  applyingSql,
  createTableSql,
  dropTableSql,
  HISTORY_TABLE,
  historySql,
  type Renderer,
  renderPayload,
} from "../sql.js";
import { type ApplyOutcome, RemoteError, type RemoteTarget } from "../target.js";
import { sqlLiteral } from "../values.js";
import { SqliteCapture } from "./sqlite-capture.js";

export interface D1Options {
  local?: boolean;
  remote?: boolean;
  /** wrangler's --config: the wrangler.toml (or .json/.jsonc) naming the database. */
  config?: string;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const WRANGLER_TIMEOUT_MS = 120_000;
/** D1 refuses a statement longer than 100 KB; a full push's INSERTs stay under it. */
const D1_STATEMENT_BYTES = 90_000;

const renderer: Renderer = {
  dialect: "sqlite",
  table: quoteIdent,
  binder: () => ({ params: [], bind: sqlLiteral }),
};

export class D1Target implements RemoteTarget {
  readonly backend = "d1";
  readonly id: string;
  private readonly flags: string[];
  private readonly cwd: string;

  constructor(
    private readonly name: string,
    options: D1Options,
  ) {
    if (!NAME.test(name)) {
      throw new InvalidArgumentError(
        "target",
        `d1: needs a database name (letters, digits, _ and -), got ${JSON.stringify(name)}`,
      );
    }
    checkObject("d1", options);
    if (options.local && options.remote)
      throw new InvalidArgumentError("d1", "local and remote exclude each other");
    this.flags = [options.remote ? "--remote" : "--local"];
    let config: string | null = null;
    if (options.config !== undefined) {
      if (typeof options.config !== "string" || options.config === "") {
        throw new InvalidArgumentError("config", "must be the path of a wrangler configuration file");
      }
      config = resolve(options.config);
      this.flags.push("--config", config);
    }
    // wrangler keeps local D1 state in .wrangler/ beside the configuration.
    this.cwd = config ? dirname(config) : process.cwd();
    this.id = `d1:${name}?${options.remote ? "remote" : "local"}${config ? `&config=${config}` : ""}`;
  }

  async apply(payload: Payload, keepHistory: number): Promise<ApplyOutcome> {
    return this.runFile(payload.name, payload.key, payload.mode, keepHistory, async (line) => {
      for (const s of renderPayload(payload, renderer)) await line(s.sql);
    });
  }

  /**
   * A full push as one file, which D1 runs as one transaction: the claim,
   * each table dropped, created and filled by INSERTs of literal rows kept
   * under D1's 100 KB statement limit, the indexes, the views, the swap
   * hook. D1 has no savepoints, so an index or view D1 refuses fails the
   * push (nothing is applied) instead of being skipped.
   */
  async copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome> {
    return this.runFile(job.name, job.key, "full", keepHistory, async (line) => {
      for (const v of job.views) await line(`DROP VIEW IF EXISTS ${quoteIdent(v.name)}`);
      for (const t of job.tables) {
        await line(dropTableSql(t, renderer));
        await line(createTableSql(t, renderer));
        const head = `INSERT INTO ${quoteIdent(t.name)} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) VALUES `;
        let values: string[] = [];
        let size = head.length;
        for (const batch of job.rows(t, 5000)) {
          for (const row of batch) {
            const text = `(${row.map(sqlLiteral).join(", ")})`;
            if (values.length > 0 && size + text.length + 2 > D1_STATEMENT_BYTES) {
              await line(head + values.join(", "));
              values = [];
              size = head.length;
            }
            values.push(text);
            size += text.length + 2;
          }
        }
        if (values.length > 0) await line(head + values.join(", "));
      }
      const byName = new Map(job.tables.map((t) => [t.name, t]));
      for (const ix of job.indexes) {
        const missing = missingColumns(ix, byName.get(ix.table)!);
        if (missing.length > 0)
          job.warn(`index ${ix.name} is not created: ${ix.table}.${missing.join(", ")} is not pushed`);
        else await line(sqliteIndexSql(ix));
      }
      for (const v of job.views) await line(v.sql);
      await job.afterSwap(line, job.tables, "sqlite");
    });
  }

  /**
   * Writes the file — the history table, the claim of the key (a plain
   * INSERT: a duplicate key fails the file), `body`'s statements, the
   * pruning — and has wrangler run it.
   */
  private async runFile(
    name: string,
    key: string,
    mode: string,
    keepHistory: number,
    body: (line: (sql: string) => Promise<void>) => Promise<void>,
  ): Promise<ApplyOutcome> {
    const h = historySql(renderer);
    const marker = applyingSql();
    const res = await this.runStatements(name, async (line) => {
      await line(h.create);
      await line(marker.create);
      await line(
        `INSERT INTO ${quoteIdent(HISTORY_TABLE)} (sync_key, sync_name, sync_at, sync_mode) VALUES (${[key, name, new Date().toISOString(), mode].map(sqlLiteral).join(", ")})`,
      );
      // The marker keeps these writes out of the target's capture; the file is one transaction.
      await line(marker.set);
      await body(line);
      if (keepHistory > 0) await line(h.prune.replace("?", sqlLiteral(BigInt(keepHistory))));
      await line(marker.clear);
    });
    if (res.ok) return "applied";
    if (res.message.includes(`${HISTORY_TABLE}.sync_key`)) return "duplicate";
    throw new RemoteError(
      `${this.id} refused ${mode === "full" ? "full push" : "payload"} ${name}: ${res.message}`,
    );
  }

  capture(): Capture {
    return new SqliteCapture({
      query: async (sql) => {
        const out = await this.wrangler(["--command", sql.join(";\n")]);
        if (!out.ok) throw new RemoteError(`${this.id} refused a capture query: ${out.message}`);
        const doc = JSON.parse(out.stdout) as Array<{ results?: Array<Record<string, unknown>> }>;
        // Columns come back as objects, in the SELECT's order (every name is unique there).
        return doc.map((d) => (d.results ?? []).map((r) => Object.values(r)));
      },
      batch: async (sql) => {
        const out = await this.runStatements("capture", async (line) => {
          for (const s of sql) await line(s);
        });
        if (!out.ok) throw new RemoteError(`${this.id} refused to install capture: ${out.message}`);
      },
    });
  }

  /**
   * Writes statements to one file (one transaction on D1) and has wrangler
   * run it; the folder holding the file is removed on every path.
   */
  private async runStatements(
    name: string,
    write: (line: (sql: string) => Promise<void>) => Promise<void>,
  ): Promise<{ ok: boolean; message: string; stdout: string }> {
    const dir = await mkdtemp(join(tmpdir(), "tidewire-d1-"));
    try {
      const file = join(dir, `${name}.sql`);
      const out = createWriteStream(file);
      await write(async (sql: string) => {
        if (!out.write(`${sql};\n`)) await once(out, "drain");
      });
      out.end();
      await finished(out);
      return await this.wrangler(["--file", file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {}

  /** Runs `wrangler d1 execute NAME … --json`; a refusal by D1 is { ok: false }, anything else throws. */
  private wrangler(args: string[]): Promise<{ ok: boolean; message: string; stdout: string }> {
    const bin = findWrangler();
    if (!bin) {
      return Promise.reject(
        new RemoteError(
          `cannot push to ${this.id}: wrangler is not on PATH or in node_modules/.bin (npm install -D wrangler)`,
        ),
      );
    }
    const argv = ["d1", "execute", this.name, ...this.flags, ...args, "--json"];
    return new Promise((done, fail) => {
      execFile(
        bin,
        argv,
        {
          cwd: this.cwd,
          env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", FORCE_COLOR: "0" },
          maxBuffer: 64 * 1024 * 1024,
          timeout: WRANGLER_TIMEOUT_MS,
        },
        (err, stdout, stderr) => {
          if (!err) return done({ ok: true, message: "", stdout });
          const reported = d1Error(stdout);
          if (reported !== null) return done({ ok: false, message: reported, stdout });
          const why =
            plain(stderr || stdout || (err as Error).message)
              .trim()
              .split("\n")
              .find((l) => l.trim()) ?? "";
          fail(new RemoteError(`wrangler d1 execute ${this.name} failed for ${this.id}: ${why.trim()}`));
        },
      );
    });
  }
}

/** wrangler's message without colours or its "✘ [ERROR]" badge. */
function plain(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC.
  return text.replace(/\u001b\[[0-9;]*m/g, "").replace(/✘\s*\[ERROR\]\s*/g, "");
}

/** wrangler --json prints `{ "error": { "text": … } }` when D1 itself refused the SQL. */
function d1Error(stdout: string): string | null {
  try {
    const doc = JSON.parse(stdout) as { error?: { text?: unknown } };
    return typeof doc?.error?.text === "string" ? doc.error.text : null;
  } catch {
    return null;
  }
}

export function findWrangler(): string | null {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), resolve("node_modules/.bin")];
  for (const d of dirs) {
    if (d === "") continue;
    const p = join(d, "wrangler");
    if (existsSync(p)) return p;
  }
  return null;
}

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
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import type { Capture } from "./capture.js";
import { SqliteCapture } from "./capture-sqlite.js";
import type { Payload } from "./payload.js";
import { applyingSql, HISTORY_TABLE, historySql, type Renderer, renderPayload } from "./sql.js";
import { type ApplyOutcome, RemoteError, type RemoteTarget } from "./target.js";
import { quoteIdent, sqlLiteral } from "./values.js";

export interface D1Options {
  local?: boolean;
  remote?: boolean;
  /** wrangler's --config: the wrangler.toml (or .json/.jsonc) naming the database. */
  config?: string;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const WRANGLER_TIMEOUT_MS = 120_000;

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
    if (options === null || typeof options !== "object")
      throw new InvalidArgumentError("d1", "must be an object");
    if (options.local && options.remote)
      throw new InvalidArgumentError("d1", "--local and --remote exclude each other");
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
    const h = historySql(renderer);
    const marker = applyingSql();
    const lines = [
      h.create,
      marker.create,
      `INSERT INTO ${quoteIdent(HISTORY_TABLE)} (sync_key, sync_name, sync_at, sync_mode) VALUES (${[
        payload.key,
        payload.name,
        new Date().toISOString(),
        payload.mode,
      ]
        .map(sqlLiteral)
        .join(", ")})`,
      // The marker keeps these writes out of the target's capture; the file is one transaction.
      marker.set,
      ...renderPayload(payload, renderer).map((s) => s.sql),
    ];
    if (keepHistory > 0) lines.push(h.prune.replace("?", sqlLiteral(BigInt(keepHistory))));
    lines.push(marker.clear);
    const out = await this.runFile(payload.name, lines);
    if (out.ok) return "applied";
    if (out.message.includes(`${HISTORY_TABLE}.sync_key`)) return "duplicate";
    throw new RemoteError(`${this.id} refused payload ${payload.name}: ${out.message}`);
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
        const out = await this.runFile("capture", sql);
        if (!out.ok) throw new RemoteError(`${this.id} refused to install capture: ${out.message}`);
      },
    });
  }

  /** Runs statements as one file (one transaction on D1); the folder holding it is removed on every path. */
  private async runFile(name: string, lines: string[]): Promise<{ ok: boolean; message: string }> {
    const dir = await mkdtemp(join(tmpdir(), "tidewire-d1-"));
    try {
      const file = join(dir, `${name}.sql`);
      await writeFile(file, `${lines.join(";\n")};\n`);
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

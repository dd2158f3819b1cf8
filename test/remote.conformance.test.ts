/**
 * The remote target conformance suite (test/conformance/remote-target.ts)
 * over every backend: a SQLite file, libSQL (@libsql/client on a file),
 * PostgreSQL (DATABASE_URL, one schema per target) and Cloudflare D1
 * (wrangler's local D1: each statement is a wrangler process, so it runs one
 * fixed workload and a long timeout). One line per backend.
 */
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import pg from "pg";
import { expect } from "vitest";
import { CHANGES_TABLE } from "../src/remote/capture.js";
import { findWrangler } from "../src/remote/targets/d1.js";
import { type RemoteBackend, remoteTargetSuite } from "./conformance/remote-target.js";
import { sql } from "./helpers.js";
import {
  DATABASE_URL,
  dumpLibsql,
  dumpPostgres,
  dumpQuotedSqlite,
  dumpSqlite,
  dumpSqliteFile,
  QUOTED,
  quotedDump,
  usePostgres,
  wranglerProject,
  wranglerQuery,
} from "./remote-helpers.js";

const HISTORY = "SELECT sync_key FROM _tidewire_sync_history";
const pgs = usePostgres("tw_conf_");
const wrangler = findWrangler();

const sqliteFile: RemoteBackend = {
  name: "SQLite file",
  skip: () => null,
  pullable: true,
  runs: 20,
  make: async (dir) => {
    const path = join(dir, "mirror.db");
    const rows = (q: string) => sql(path, q).trim().split("\n").filter(Boolean);
    return {
      url: `sqlite:${path}`,
      exec: async (s) => void sql(path, s),
      dump: async () => dumpSqliteFile(path),
      local: dumpSqlite,
      historyKeys: async () => rows(HISTORY),
      backlog: async () =>
        rows(`SELECT name FROM sqlite_schema WHERE name = '${CHANGES_TABLE}'`).length === 0
          ? 0
          : Number(rows(`SELECT count(*) FROM ${CHANGES_TABLE}`)[0]),
    };
  },
};

const libsqlFile: RemoteBackend = {
  name: "libSQL (file:)",
  skip: () => null,
  pullable: true,
  runs: 12,
  make: async (dir) => {
    const url = `file:${join(dir, "libsql.db")}`;
    const client = createClient({ url });
    const count = async (q: string) => Number((await client.execute(q)).rows[0]![0]);
    return {
      url,
      exec: async (s) => void (await client.executeMultiple(s)),
      dump: () => dumpLibsql(url),
      local: dumpSqlite,
      historyKeys: async () => (await client.execute(HISTORY)).rows.map((r) => String(r[0])),
      backlog: async () =>
        (await count(`SELECT count(*) FROM sqlite_schema WHERE name = '${CHANGES_TABLE}'`)) === 0
          ? 0
          : count(`SELECT count(*) FROM ${CHANGES_TABLE}`),
      close: async () => client.close(),
    };
  },
};

const postgres: RemoteBackend = {
  name: "PostgreSQL",
  skip: () => (pgs.reachable() ? null : `PostgreSQL is not reachable at ${DATABASE_URL}`),
  pullable: true,
  runs: 8,
  make: async () => {
    const schema = pgs.newSchema();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(`SET search_path TO "${schema}"`);
    return {
      url: `${DATABASE_URL}?schema=${schema}`,
      exec: async (s) => void (await client.query(s)),
      dump: () => dumpPostgres(client, schema),
      local: dumpSqlite,
      historyKeys: async () => (await client.query(HISTORY)).rows.map((r) => r.sync_key as string),
      backlog: async () => {
        const exists = await client.query("SELECT to_regclass($1) AS t", [`"${schema}".${CHANGES_TABLE}`]);
        if (exists.rows[0].t === null) return 0;
        return (await client.query(`SELECT count(*)::int AS n FROM ${CHANGES_TABLE}`)).rows[0].n as number;
      },
      close: () => client.end(),
    };
  },
};

const d1Local: RemoteBackend = {
  name: "Cloudflare D1 (wrangler --local)",
  skip: () => (wrangler === null ? "wrangler is not on PATH or in node_modules/.bin" : null),
  pullable: true,
  runs: 1,
  pullBatch: 1000, // each read is a wrangler process
  timeoutMs: 300_000,
  make: async (dir) => {
    const config = wranglerProject(dir);
    // Each apply writes its SQL to a temporary file for wrangler; none may outlive the target.
    const tempFiles = () => readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length;
    const before = tempFiles();
    const query = (s: string) =>
      wranglerQuery(config, s.replaceAll("\n", " ")) as Array<Record<string, unknown>>;
    return {
      url: "d1:DB",
      d1: { local: true, config },
      exec: async (s) => void query(s),
      dump: async () => quotedDump(query(QUOTED) as Array<{ t: string; r: string }>),
      local: dumpQuotedSqlite,
      historyKeys: async () => query(HISTORY).map((r) => r.sync_key as string),
      backlog: async () =>
        query(`SELECT count(*) AS n FROM sqlite_schema WHERE name = '${CHANGES_TABLE}'`)[0]!.n === 0
          ? 0
          : (query(`SELECT count(*) AS n FROM ${CHANGES_TABLE}`)[0]!.n as number),
      close: async () => expect(tempFiles()).toBe(before),
    };
  },
};

for (const backend of [sqliteFile, libsqlFile, postgres, d1Local]) remoteTargetSuite(backend);

/**
 * The Django app of test/apps/django, driven from a test: the python that has
 * Django, `manage.py migrate` and drive.py (ORM writes) on one database file,
 * Python's own sqlite3 module as one more client, and replicas migrated and
 * tracked with `tidewire init` (every music_ table in the bucket "music").
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect } from "vitest";
import { appTables, ROOT, runProcess, tidewire } from "./realapp-helpers.js";

export const DJANGO_APP = join(ROOT, "test/apps/django");

/**
 * The python that has Django: $TIDEWIRE_PYTHON, or python3 on PATH. Missing
 * Django is a visible skip on a developer machine and a failure under
 * CI=true, where .ci/run installs it.
 */
export function djangoPython(): string | null {
  const python = process.env.TIDEWIRE_PYTHON ?? "python3";
  const probe = spawnSync(
    python,
    ["-c", "import django, sys; sys.exit(0 if django.VERSION[0] >= 5 else 1)"],
    {
      encoding: "utf8",
    },
  );
  if (probe.status === 0) return python;
  const why = probe.error?.message ?? (probe.stderr.trim().split("\n").pop() || "Django older than 5");
  if (process.env.CI === "true") throw new Error(`Django 5 is not importable by ${python} under CI: ${why}`);
  console.warn(`SKIPPED: real-application Django tests, ${python} has no Django 5 (${why})`);
  return null;
}

/** The Django app bound to one database file. */
export class DjangoReplica {
  constructor(
    readonly python: string,
    readonly db: string,
  ) {}

  private env(): NodeJS.ProcessEnv {
    return { TIDEWIRE_DJANGO_DB: this.db, PYTHONDONTWRITEBYTECODE: "1" };
  }

  /** `manage.py migrate music [target]`: to the latest migration, or to one (e.g. "0003"). */
  async migrate(target?: string): Promise<void> {
    const args = [join(DJANGO_APP, "manage.py"), "migrate", "music", ...(target ? [target] : []), "-v", "0"];
    const r = await runProcess(this.python, args, this.env(), DJANGO_APP);
    if (r.code !== 0) throw new Error(`manage.py migrate ${target ?? ""} on ${this.db} failed: ${r.stderr}`);
  }

  /** ORM writes through drive.py, in one transaction; the keys of the rows touched. */
  async orm(ops: DriveOp[]): Promise<Array<string | number>> {
    const r = await runProcess(this.python, [join(DJANGO_APP, "drive.py"), JSON.stringify(ops)], this.env());
    const doc = r.stdout ? JSON.parse(r.stdout) : { ok: false, error: r.stderr };
    if (r.code !== 0 || !doc.ok) throw new Error(`drive.py on ${this.db} failed: ${doc.error ?? r.stderr}`);
    return doc.results;
  }

  /** One statement through Python's own sqlite3 module, committed. */
  async pysql(statement: string, params: unknown[] = []): Promise<void> {
    const script =
      "import json, sqlite3, sys\n" +
      "c = sqlite3.connect(sys.argv[1], timeout=20)\n" +
      "c.execute(sys.argv[2], json.loads(sys.argv[3]))\n" +
      "c.commit()\n";
    const r = await runProcess(this.python, ["-c", script, this.db, statement, JSON.stringify(params)]);
    if (r.code !== 0) throw new Error(`python sqlite3 on ${this.db} failed: ${r.stderr}`);
  }
}

export type DriveOp =
  | { op: "create"; model: string; fields: Record<string, unknown> }
  | { op: "update" | "save"; model: string; pk: string | number; fields: Record<string, unknown> }
  | { op: "delete"; model: string; pk: string | number }
  | {
      op: "m2m_add" | "m2m_remove";
      model: string;
      pk: string | number;
      field: string;
      pks: Array<string | number>;
    };

/** Tracks every table of the app in the bucket "music"; soft-asserts the AutoField warning. */
async function track(db: string): Promise<void> {
  const tables = appTables(db, "music_");
  const r = await tidewire(["init", db, ...tables.flatMap((t) => ["--table", `${t}=music`])]);
  expect(r.code, r.stderr).toBe(0);
  // music_label (AutoField) and the auto M2M table have INTEGER keys SQLite fills: two replicas pick the same.
  // The warning's wording is free: some output besides the "tracking …" lines names the table and the risk.
  const other = `${r.stdout}\n${r.stderr}`
    .split("\n")
    .filter((l) => !l.startsWith("tracking "))
    .join("\n");
  const warns = /warn|integer primary key|autoincrement|same (id|key)|uuid|ulid/i.test(other);
  for (const t of ["music_label", "music_album_tags"])
    expect
      .soft(warns && other.includes(t), `init warns that ${t} has SQLite-filled INTEGER keys:\n${other}`)
      .toBe(true);
}

/** Replica files `<dir>/<name>.db`, migrated by Django (to `target`, or every migration) and tracked. */
export async function djangoReplicas(
  python: string,
  dir: string,
  names: string[],
  target?: string,
): Promise<DjangoReplica[]> {
  const out = names.map((n) => new DjangoReplica(python, join(dir, `${n}.db`)));
  await Promise.all(out.map((r) => r.migrate(target)));
  for (const r of out) await track(r.db);
  return out;
}

/** A creation time for rows: Django stores it as naive UTC text. */
export const NOW = "2024-05-01T10:00:00Z";

/**
 * Auth: who may call the hub, and for which buckets.
 *
 * Contract: a hub is never open by accident. `resolveAuth` takes `--token`
 * (every bucket, admin), or `--tokens-file` (JSON: each token with its
 * buckets and read, read-write or admin access, and optionally the tables it
 * declares), or neither, in which case it reads the token kept beside the
 * database (checked like `--token`: an empty or short file refuses the
 * start), or makes one, writes it there readable by its owner only (mode
 * 0600) and reports it so the daemon prints it once.
 * `--insecure` turns auth off, and is refused unless the hub listens on a
 * loopback address. `identify` compares the presented bearer token with
 * every known one in constant time (SHA-256 digests through timingSafeEqual,
 * all of them compared whatever matched), so the answer's timing says
 * nothing about the tokens.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { z } from "zod";
import { HubError, InvalidArgumentError, TidewireError } from "../errors.js";
import { FULL_SCOPE, type Scope } from "../scope.js";

export interface AuthOptions {
  token?: string;
  tokensFile?: string;
  insecure?: boolean;
  /** The address the hub listens on (--insecure needs loopback). */
  host: string;
  /** The hub's database: a generated token is kept at `<db>.token`. */
  dbPath: string;
}

const tokensFileSchema = z.strictObject({
  tokens: z
    .array(
      z.strictObject({
        token: z.string().min(16, "must be at least 16 characters"),
        buckets: z.union([z.literal("*"), z.array(z.string().min(1)).min(1)]),
        access: z.enum(["read", "read-write", "admin"]),
        name: z
          .string()
          .regex(/^[\w.:-]{1,64}$/)
          .optional(),
        /** Tables the hub accepts into this entry's one bucket when they first arrive (see Hub). */
        tables: z.array(z.string().min(1).max(200)).min(1).optional(),
      }),
    )
    .min(1),
});

/** The rule `--token` and `<db>.token` are held to. */
const TOKEN_RULE = "must be at least 16 printable characters without spaces";

function usable(token: string): boolean {
  return token.length >= 16 && /^[\x21-\x7e]+$/.test(token);
}

interface Entry {
  digest: Buffer;
  scope: Scope;
}

export class Auth {
  private constructor(
    private readonly entries: Entry[],
    /** True when auth is off (--insecure). */
    readonly open: boolean,
    /** Table -> bucket: tables the tokens file declares (its entries' `tables`). */
    readonly tables: ReadonlyMap<string, string> = new Map(),
  ) {}

  static insecure(): Auth {
    return new Auth([], true);
  }

  static token(token: string): Auth {
    return new Auth(
      [{ digest: digest(token), scope: { ...FULL_SCOPE, id: `token-${short(token)}` } }],
      false,
    );
  }

  static tokensFile(path: string): Auth {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new InvalidArgumentError("tokensFile", `cannot read ${path} as JSON: ${(err as Error).message}`);
    }
    const r = tokensFileSchema.safeParse(doc);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new InvalidArgumentError("tokensFile", `${path}: ${i.path.join(".") || "(file)"}: ${i.message}`);
    }
    const tables = new Map<string, string>();
    r.data.tokens.forEach((t, i) => {
      for (const table of t.tables ?? []) {
        const where = `${path}: tokens.${i}.tables`;
        if (t.buckets === "*" || t.buckets.length !== 1)
          throw new InvalidArgumentError(
            "tokensFile",
            `${where}: an entry that declares tables names one bucket`,
          );
        const bucket = t.buckets[0]!;
        const before = tables.get(table);
        if (before !== undefined && before !== bucket)
          throw new InvalidArgumentError(
            "tokensFile",
            `${where}: table ${JSON.stringify(table)} is declared in buckets ${JSON.stringify(before)} and ${JSON.stringify(bucket)}`,
          );
        tables.set(table, bucket);
      }
    });
    return new Auth(
      r.data.tokens.map((t) => ({
        digest: digest(t.token),
        scope: {
          id: t.name ?? `token-${short(t.token)}`,
          buckets: t.buckets === "*" ? "*" : new Set(t.buckets),
          write: t.access !== "read",
          admin: t.access === "admin",
        },
      })),
      false,
      tables,
    );
  }

  /** Every bucket some token may use: "*" when one may use any (or auth is off). */
  buckets(): "*" | Set<string> {
    if (this.open) return "*";
    const out = new Set<string>();
    for (const e of this.entries) {
      if (e.scope.buckets === "*") return "*";
      for (const b of e.scope.buckets) out.add(b);
    }
    return out;
  }

  /** The scope of an `Authorization: Bearer …` header, or null when it names no known token. */
  identify(header: string | undefined): Scope | null {
    if (this.open) return FULL_SCOPE;
    const m = typeof header === "string" ? /^Bearer ([\x21-\x7e]{1,512})$/.exec(header) : null;
    const presented = digest(m ? m[1]! : "");
    let found: Scope | null = null;
    for (const e of this.entries) {
      if (timingSafeEqual(presented, e.digest) && m) found = e.scope;
    }
    return found;
  }
}

export interface ResolvedAuth {
  auth: Auth;
  /** Set when a token was made now: the daemon prints it once. */
  generated?: { token: string; path: string };
  /** Where the token in use came from, for the start-up log. */
  source: string;
}

/** Refuses conflicting or unsafe options before anything is opened or written. */
export function checkAuthOptions(options: AuthOptions): void {
  const given = [options.token, options.tokensFile, options.insecure || undefined].filter(
    (v) => v !== undefined,
  );
  if (given.length > 1) {
    throw new InvalidArgumentError("auth", "give one of --token, --tokens-file and --insecure");
  }
  if (options.insecure) {
    if (!isLoopback(options.host)) {
      throw new InvalidArgumentError(
        "insecure",
        `auth may only be turned off on a loopback address, not ${options.host}`,
      );
    }
  }
  if (options.token !== undefined && !usable(options.token)) {
    throw new InvalidArgumentError("token", TOKEN_RULE);
  }
}

export function resolveAuth(options: AuthOptions): ResolvedAuth {
  checkAuthOptions(options);
  if (options.insecure) return { auth: Auth.insecure(), source: "none (--insecure, loopback only)" };
  if (options.token !== undefined) {
    return { auth: Auth.token(options.token), source: "--token" };
  }
  if (options.tokensFile !== undefined) {
    return { auth: Auth.tokensFile(options.tokensFile), source: options.tokensFile };
  }
  const path = `${options.dbPath}.token`;
  if (existsSync(path)) {
    const mode = statSync(path).mode & 0o077;
    if (mode !== 0) {
      throw new TidewireError(
        `${path} is readable by others (mode ${(statSync(path).mode & 0o777).toString(8)}); chmod 600 it`,
        "ERR_TOKEN_FILE_MODE",
      );
    }
    const token = readFileSync(path, "utf8").trim();
    // The same rule as --token: an empty file would make a hub no one can call, silently.
    if (!usable(token)) {
      throw new TidewireError(
        `${path} ${token === "" ? "is empty" : "holds no usable token"}: a token ${TOKEN_RULE}; write one there or delete the file to have one generated`,
        "ERR_TOKEN_FILE",
      );
    }
    return { auth: Auth.token(token), source: path };
  }
  const token = randomBytes(24).toString("base64url");
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: "wx" });
  return { auth: Auth.token(token), generated: { token, path }, source: path };
}

/**
 * The 401 for a request `identify` found no scope for. It says whether a
 * token came at all, which the caller knows anyway; never why one is wrong.
 */
export function unauthorized(header: string | undefined): HubError {
  return new HubError(
    401,
    "ERR_UNAUTHORIZED",
    header === undefined || header === ""
      ? "a bearer token is required (Authorization: Bearer <token>)"
      : "the bearer token is not one this hub knows (Authorization: Bearer <token>)",
  );
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1" || host === "[::1]";
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** A name for logs: 8 hex digits of the digest, never the token. */
function short(token: string): string {
  return digest(token).toString("hex").slice(0, 8);
}

/**
 * `tidewire serve --tls-cert --tls-key`: the hub over HTTPS. A self-signed
 * certificate made by openssl for 127.0.0.1; `tidewire sync` trusts it through
 * NODE_EXTRA_CA_CERTS (as a client of a private CA would), refuses it without,
 * and plain HTTP to the TLS port gets nowhere.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon/daemon.js";
import { createLogger } from "../src/log.js";
import { Replica } from "../src/replica/replica.js";
import { runNode, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN = "tls-test-token-0123456789";
const tempDir = useTempDirs("tidewire-tls-");
const daemons: Daemon[] = [];

beforeAll(() => {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  return { cert, key };
}

function itemsDb(path: string, rows: number): string {
  const r = Replica.open(path);
  r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
  r.track("items");
  const insert = r.store.db.prepare("INSERT INTO items VALUES (?, ?)");
  for (let i = 1; i <= rows; i++) insert.run(i, `item ${i}`);
  r.close();
  return path;
}

describe("tidewire serve over TLS", () => {
  it("syncs over HTTPS with a trusted certificate, and refuses an untrusted one or plain HTTP", async () => {
    const dir = tempDir();
    const { cert, key } = selfSigned(dir);
    const hub = await startDaemon({
      dbPath: join(dir, "hub.db"),
      port: 0,
      token: TOKEN,
      tls: { certFile: cert, keyFile: key },
      logger: createLogger({ level: "silent" }),
    });
    daemons.push(hub);
    expect(hub.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const trusting = { NODE_EXTRA_CA_CERTS: cert };

    const a = itemsDb(join(dir, "a.db"), 25);
    const push = await runNode(
      [CLI, "sync", a, "--remote", hub.url, "--token", TOKEN, "--json"],
      dir,
      trusting,
    );
    expect(push.code, push.stderr).toBe(0);
    expect(JSON.parse(push.stdout)).toMatchObject({ ok: true, pushed: 25 });

    const b = itemsDb(join(dir, "b.db"), 0);
    const pull = await runNode(
      [CLI, "sync", b, "--remote", hub.url, "--token", TOKEN, "--json"],
      dir,
      trusting,
    );
    expect(pull.code, pull.stderr).toBe(0);
    expect(JSON.parse(pull.stdout)).toMatchObject({ ok: true, pulled: 25 });

    const untrusted = await runNode([CLI, "sync", b, "--remote", hub.url, "--token", TOKEN], dir);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/certificate/i);

    const plain = hub.url.replace("https:", "http:");
    const cleartext = await runNode([CLI, "sync", b, "--remote", plain, "--token", TOKEN], dir, trusting);
    expect(cleartext.code).toBe(1);
  });

  it("refuses a key that is not a key, and a missing file, before it starts", async () => {
    const dir = tempDir();
    const { cert } = selfSigned(dir);
    const db = join(dir, "hub.db");
    const wrong = await runNode(
      [CLI, "serve", "--db", db, "--port", "0", "--tls-cert", cert, "--tls-key", cert],
      dir,
    );
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/do not make a TLS identity/);
    const missing = await runNode(
      [CLI, "serve", "--db", db, "--port", "0", "--tls-cert", join(dir, "nope.pem"), "--tls-key", cert],
      dir,
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.pem/);
    const half = await runNode([CLI, "serve", "--db", db, "--port", "0", "--tls-cert", cert], dir);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/--tls-cert and --tls-key go together/);
    expect(existsSync(db)).toBe(false);
  });
});

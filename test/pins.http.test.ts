/**
 * Pins over real HTTP on loopback: the daemon's GET/PUT /v1/pins/:hash
 * refuse bad input (malformed hash 400, no token 401, read-only PUT 403,
 * absent 404, mismatched body 422, oversized 413) storing nothing; one
 * daemon's DownloadPins job fetches, from another daemon, the pin that a
 * synced row references, byte for byte; a source that serves wrong bytes
 * gets its download refused (nothing stored) and the job retried with
 * backoff until the source serves the right bytes.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Daemon, type DaemonOptions, startDaemon } from "../src/daemon/daemon.js";
import { createLogger } from "../src/log.js";
import { registry } from "../src/metrics.js";
import { DOWNLOAD_PINS, downloadPins, downloadPinsHandler } from "../src/pins/download.js";
import { Pins } from "../src/pins/pins.js";
import { Queue } from "../src/queue/queue.js";
import { Worker } from "../src/queue/worker.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { useTempDirs, waitFor } from "./helpers.js";

const tempDir = useTempDirs("tidewire-pins-http-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const TOKEN = "pins-full-access-token-01";
const READER = "pins-read-only-token-0002";
const DOCS = "CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, blob TEXT)";
const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

async function daemon(dbPath: string, options: DaemonOptions = {}): Promise<Daemon> {
  const d = await startDaemon({
    dbPath,
    port: 0,
    logger: createLogger({ level: "silent" }),
    ...options,
  });
  cleanup.push(() => d.stop());
  return d;
}

/** A database with the tracked table docs (bucket "default"). */
function docsDb(path: string, nodeId: string): string {
  const r = Replica.open(path, { nodeId });
  r.store.db.exec(DOCS);
  r.track("docs");
  r.close();
  return path;
}

function pinFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => d.name);
}

async function metric(name: string, labels = ""): Promise<number> {
  const text = await registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

describe("GET and PUT /v1/pins/:hash", () => {
  async function hub(maxBytes = 1000) {
    const dir = tempDir();
    const tokensFile = join(dir, "tokens.json");
    writeFileSync(
      tokensFile,
      JSON.stringify({
        tokens: [
          { token: TOKEN, buckets: "*", access: "read-write" },
          { token: READER, buckets: ["elsewhere"], access: "read" },
        ],
      }),
    );
    const d = await daemon(join(dir, "hub.db"), { tokensFile, pins: { maxBytes } });
    const call = (method: string, hash: string, body?: Uint8Array | string, token: string | null = TOKEN) =>
      fetch(`${d.url}/v1/pins/${hash}`, {
        method,
        body,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    return { d, call };
  }

  it("streams a pin to any valid token, byte for byte", async () => {
    const { d, call } = await hub(1024 * 1024);
    const bytes = randomBytes(600_000);
    const { hash } = await d.pins.blobs.put(bytes);
    for (const token of [TOKEN, READER]) {
      const res = await call("GET", hash, undefined, token);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/octet-stream");
      expect(res.headers.get("content-length")).toBe(String(bytes.length));
      expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);
    }
  });

  it("refuses bad input with a 4xx and a clear message, and stores nothing", async () => {
    const { d, call } = await hub(1000);
    const body = Buffer.from("pin body");
    const hash = sha256(body);
    const refusals: Array<[Promise<Response>, number, string]> = [
      [call("GET", "not-a-hash"), 400, "ERR_BAD_HASH"],
      [call("GET", hash.toUpperCase()), 400, "ERR_BAD_HASH"],
      [call("PUT", "abc", body), 400, "ERR_BAD_HASH"],
      [call("GET", hash), 404, "ERR_PIN_NOT_FOUND"],
      [call("GET", hash, undefined, null), 401, "ERR_UNAUTHORIZED"],
      [call("GET", hash, undefined, "not-a-known-token-at-all"), 401, "ERR_UNAUTHORIZED"],
      [call("PUT", hash, body, null), 401, "ERR_UNAUTHORIZED"],
      [call("PUT", hash, body, READER), 403, "ERR_READ_ONLY"],
      [call("PUT", hash, Buffer.from("other body")), 422, "ERR_PIN_MISMATCH"],
      [call("PUT", sha256(randomBytes(1)), randomBytes(1001)), 413, "ERR_PIN_TOO_LARGE"],
    ];
    for (const [res, status, code] of refusals) {
      const r = await res;
      expect(r.status).toBe(status);
      const doc = (await r.json()) as { error: { code: string; message: string } };
      expect(doc.error.code).toBe(code);
      expect(doc.error.message).toMatch(/\w/);
    }
    expect(pinFiles(d.pins.blobs.root)).toEqual([]);
    expect(await metric("tidewire_pin_mismatches_total", '{direction="upload"}')).toBeGreaterThan(0);
  });

  it("refuses a chunked body that grows past the limit with a 413, and stores nothing", async () => {
    const { d } = await hub(1000);
    const parts = [randomBytes(600), randomBytes(600)];
    const res = await fetch(`${d.url}/v1/pins/${sha256(Buffer.concat(parts))}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: new ReadableStream({
        start(c) {
          for (const p of parts) c.enqueue(p);
          c.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(pinFiles(d.pins.blobs.root)).toEqual([]);
  });

  it("a client that hangs up mid-body leaves no pin and no temp file behind", async () => {
    const { d } = await hub(1000);
    const hash = sha256(randomBytes(8));
    const socket = connect(Number(new URL(d.url).port), "127.0.0.1");
    await new Promise<void>((r) => socket.once("connect", () => r()));
    socket.write(
      `PUT /v1/pins/${hash} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 900\r\n\r\n`,
    );
    socket.write(randomBytes(300));
    await waitFor(() => pinFiles(join(d.pins.blobs.root, "tmp")).length === 1, "the upload to start", {
      timeoutMs: 10_000,
    });
    socket.destroy();
    await waitFor(() => pinFiles(d.pins.blobs.root).length === 0, "the temp file to go", {
      timeoutMs: 10_000,
    });
  });

  it("stores a PUT whose bytes match, whatever its content type: 201, then 200 for the same again", async () => {
    const { d, call } = await hub(1000);
    const body = randomBytes(1000);
    const hash = sha256(body);
    expect((await call("PUT", hash, body)).status).toBe(201);
    const again = await fetch(`${d.url}/v1/pins/${hash}`, {
      method: "PUT",
      body,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ hash, size: 1000 });
    expect((await d.pins.blobs.read(hash)).equals(body)).toBe(true);
    // The sync endpoints keep their own rules beside the pin routes.
    const handshake = await fetch(`${d.url}/v1/handshake`, {
      method: "POST",
      body: "x",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
    });
    expect(handshake.status).toBe(415);
  });
});

describe("DownloadPins", () => {
  it("fetches, from another daemon, the pin a synced row references: the bytes arrive intact", async () => {
    const dir = tempDir();
    const a = await daemon(docsDb(join(dir, "a.db"), "node-a"), { token: TOKEN });
    const bytes = randomBytes(3 * 1024 * 1024 + 5);
    const { hash } = await a.pins.blobs.put(bytes);
    a.store.db.prepare("INSERT INTO docs (title, blob) VALUES ('report', ?)").run(hash);

    // B gets the row through the hub, the pin not.
    const bPath = docsDb(join(dir, "b.db"), "node-b");
    const replica = Replica.open(bPath);
    await new SyncManager(replica, new HttpTransport(a.url, { token: TOKEN }), {
      buckets: ["default"],
    }).initialSync();
    replica.close();
    const b = await daemon(bPath, {
      token: `${TOKEN}-b`,
      pins: { sources: () => [{ url: a.url, token: TOKEN }] },
    });
    expect(b.store.db.prepare("SELECT blob FROM docs").pluck().all()).toEqual([hash]);
    b.pins.declare("docs", "blob");
    expect(b.pins.missing()).toEqual([hash]);

    const before = await metric("tidewire_pins_downloaded_total");
    const job = b.queue.add(DOWNLOAD_PINS, {});
    await waitFor(() => b.queue.get(job.id)?.state === "completed", "the DownloadPins job to complete", {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    expect((await b.pins.blobs.read(hash)).equals(bytes)).toBe(true);
    expect(b.pins.missing()).toEqual([]);
    expect(await metric("tidewire_pins_downloaded_total")).toBe(before + 1);
  });

  it("with A only in B's peer registry, B's sync jobs bring the row and then the pin it names", async () => {
    const dir = tempDir();
    const a = await daemon(docsDb(join(dir, "a.db"), "node-a"), { token: TOKEN });
    const bytes = randomBytes(100_000);
    const { hash } = await a.pins.blobs.put(bytes);
    a.store.db.prepare("INSERT INTO docs (title, blob) VALUES ('photo', ?)").run(hash);

    const b = await daemon(docsDb(join(dir, "b.db"), "node-b"), {
      token: `${TOKEN}-b`,
      syncIntervalMs: 1_000,
      pingIntervalMs: 3_600_000,
    });
    b.pins.declare("docs", "blob");
    b.peers.upsert({ id: "a", address: a.url, buckets: ["default"], token: TOKEN });

    // No DownloadPins job is added by hand: the SyncBucket job that pulled the row queues it.
    await waitFor(() => b.pins.blobs.has(hash), "the pin to arrive at B", {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    expect((await b.pins.blobs.read(hash)).equals(bytes)).toBe(true);
    expect(b.store.db.prepare("SELECT blob FROM docs").pluck().all()).toEqual([hash]);
    // The pin is on disk a moment before the job's outcome is written.
    const completed = () =>
      b.queue.list({ type: DOWNLOAD_PINS, limit: 10 }).some((j) => j.state === "completed");
    await waitFor(completed, "the DownloadPins job to be completed", { timeoutMs: 30_000, intervalMs: 20 });
  });

  it("refuses a download whose bytes do not match and retries with backoff until the source is right", async () => {
    const right = randomBytes(200_000);
    const hash = sha256(right);
    let serveRight = false;
    let wrongServed = 0;
    const server = await listen((req, res) => {
      if (req.url !== `/v1/pins/${hash}`) return void res.writeHead(404).end();
      if (!serveRight) wrongServed++;
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(serveRight ? right : randomBytes(right.length));
    });

    const store = openStore(join(tempDir(), "b.db"));
    cleanup.push(() => store.close());
    store.db.exec(DOCS);
    store.db.prepare("INSERT INTO docs (title, blob) VALUES ('x', ?)").run(hash);
    const pins = new Pins(store);
    pins.declare("docs", "blob");
    const queue = new Queue(store);
    const handlers = { [DOWNLOAD_PINS]: downloadPinsHandler(pins, { sources: () => [{ url: server }] }) };
    const worker = new Worker(queue, handlers, { pollIntervalMs: 10 }).start();
    cleanup.push(() => worker.stop());

    const mismatchesBefore = await metric("tidewire_pin_mismatches_total", '{direction="download"}');
    const job = queue.add(
      DOWNLOAD_PINS,
      { hashes: [hash] },
      {
        maxAttempts: 50,
        backoff: { baseMs: 20, factor: 2, maxMs: 200, jitter: 0 },
      },
    );
    // Pending again after three attempts: three downloads were refused and each retry is scheduled.
    await waitFor(
      () => {
        const j = queue.get(job.id)!;
        return j.attempts >= 3 && j.state === "pending";
      },
      "three refused attempts",
      { timeoutMs: 30_000, intervalMs: 5 },
    );
    expect(wrongServed).toBeGreaterThanOrEqual(3);
    const retried = queue.get(job.id)!;
    expect(["pending", "running"]).toContain(retried.state);
    expect(retried.lastError).toMatch(/hash to/);
    expect(pins.blobs.has(hash)).toBe(false);
    // (Not tmp/: the next attempt may be streaming into a temp file right now.)
    expect(pinFiles(join(pins.blobs.root, "sha256"))).toEqual([]);
    expect(await metric("tidewire_pin_mismatches_total", '{direction="download"}')).toBeGreaterThanOrEqual(
      mismatchesBefore + 3,
    );

    serveRight = true;
    await waitFor(() => queue.get(job.id)?.state === "completed", "the job to complete", {
      timeoutMs: 30_000,
      intervalMs: 5,
    });
    expect(queue.get(job.id)!.attempts).toBeGreaterThan(3);
    expect((await pins.blobs.read(hash)).equals(right)).toBe(true);
  });

  it("tries the sources in order: a 404 or an unreachable one falls through to the next", async () => {
    const bytes = Buffer.from("on the second source only");
    const hash = sha256(bytes);
    const empty = await listen((_req, res) => void res.writeHead(404).end());
    const full = await listen((_req, res) => void res.end(bytes));
    const closed = await closedPort();
    const pins = new Pins(openStoreFor());
    const report = await downloadPins(pins, [{ url: closed }, { url: empty }, { url: `${full}/` }], {
      hashes: [hash, hash],
    });
    expect(report.downloaded).toEqual([{ hash, size: bytes.length, source: `${full}/` }]);
    expect(report.failed).toEqual([]);
    expect((await pins.blobs.read(hash)).equals(bytes)).toBe(true);

    const nowhere = sha256("nowhere");
    const missing = await downloadPins(pins, [{ url: closed }, { url: empty }], { hashes: [nowhere, hash] });
    expect(missing.present).toBe(1);
    expect(missing.failed).toHaveLength(1);
    expect(missing.failed[0]!.errors[0]).toMatch(/ECONNREFUSED/);
    expect(missing.failed[0]!.errors[1]).toMatch(/404/);
    const none = await downloadPins(pins, [], { hashes: [nowhere] });
    expect(none.failed[0]!.errors).toEqual(["no source to fetch it from"]);
  });

  it("abandons a source that stalls past the idle timeout", async () => {
    const hash = sha256("stalled");
    const stall = await listen((_req, res) => {
      res.writeHead(200);
      res.write("stal");
    });
    const pins = new Pins(openStoreFor());
    const report = await downloadPins(pins, [{ url: stall }], { hashes: [hash], idleTimeoutMs: 200 });
    expect(report.failed[0]!.errors[0]).toMatch(/no data for 200 ms/);
    expect(pinFiles(pins.blobs.root)).toEqual([]);
  });

  it("fails a job whose payload can never work at once, without retries", async () => {
    const store = openStoreFor();
    const queue = new Queue(store);
    const handler = downloadPinsHandler(new Pins(store), { sources: () => [] });
    const worker = new Worker(queue, { [DOWNLOAD_PINS]: handler }, { pollIntervalMs: 10 }).start();
    cleanup.push(() => worker.stop());
    const job = queue.add(DOWNLOAD_PINS, { hashes: ["nope"] }, { maxAttempts: 5 });
    await waitFor(() => queue.get(job.id)?.state === "failed", "the job to fail", { timeoutMs: 10_000 });
    expect(queue.get(job.id)).toMatchObject({ attempts: 1, lastError: expect.stringMatching(/hashes\[0\]/) });
  });
});

function openStoreFor() {
  const store = openStore(join(tempDir(), "x.db"));
  cleanup.push(() => store.close());
  return store;
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup.push(() => closeServer(server));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

/** The URL of a port nothing listens on any more. */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await closeServer(server);
  return url;
}

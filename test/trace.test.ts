/**
 * OpenTelemetry spans, recorded by the SDK's InMemorySpanExporter: a job's
 * run is a child of the span active at add() — also when another process
 * added it (the context read from the row) — with error status on failure;
 * a sync cycle over real HTTP has push and pull children, pull an apply
 * child, and the hub's request spans join the client's trace, named by the
 * route pattern and holding no token; a remote push has its span; `tidewire
 * serve --trace` under a preloaded SDK traces its requests. And in
 * child processes with module hooks: nothing imports @opentelemetry/api
 * until enableTracing() is called, and an absent api leaves tracing off and
 * everything working.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildServer } from "../src/daemon/server.js";
import { Auth } from "../src/hub/auth.js";
import { createLogger } from "../src/log.js";
import { MemoryQueue } from "../src/queue/memory-queue.js";
import { Queue } from "../src/queue/queue.js";
import { Worker } from "../src/queue/worker.js";
import { RemoteSync } from "../src/remote/remote-sync.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { disableTracing, enableTracing } from "../src/trace.js";
import { listeningUrl, runNode, useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-trace-");
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = trace.getTracer("test");
const cleanup: Array<() => unknown> = [];

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  expect(await enableTracing()).toBe(true);
});
afterAll(() => {
  disableTracing();
  trace.disable();
  context.disable();
  propagation.disable();
});
beforeEach(() => exporter.reset());
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const spans = () => exporter.getFinishedSpans();
const named = (name: string) => spans().filter((s) => s.name === name);
const one = (name: string): ReadableSpan => {
  const found = named(name);
  expect(found.map((s) => s.name)).toEqual([name]);
  return found[0]!;
};
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

function queueIn(dir: string) {
  const store = openStore(join(dir, "jobs.db"));
  cleanup.push(() => store.close());
  return new Queue(store, "default", { backoff: { baseMs: 1, jitter: 0 } });
}

function work(queue: Queue, handlers: ConstructorParameters<typeof Worker>[1]) {
  const worker = new Worker(queue, handlers, { pollIntervalMs: 5 }).start();
  cleanup.push(() => worker.stop());
  return worker;
}

describe("a job's run", () => {
  it("is a child of the span active at add(), and the handler runs inside it", async () => {
    const queue = queueIn(tempDir());
    const parent = tracer.startSpan("checkout");
    const job = context.with(trace.setSpan(context.active(), parent), () =>
      queue.add("email", { to: "ada" }),
    );
    parent.end();
    const { traceId, spanId } = parent.spanContext();
    expect(job.trace).toBe(`00-${traceId}-${spanId}-01`);
    expect(queue.get(job.id)!.trace).toBe(job.trace);
    // One added with nothing active is a root, even though it wakes a worker whose stack is traced.
    const loose = queue.add("email", { to: "bob" });
    expect(loose.trace).toBeNull();

    let inside: string | undefined;
    work(queue, {
      email: (j) => {
        if (j.id === job.id) inside = trace.getActiveSpan()?.spanContext().spanId;
      },
    });
    await waitFor(() => named("run email").length === 2, "two run spans");
    const [run, root] = named("run email").sort(
      (a, b) => Number(a.attributes["messaging.message.id"]) - Number(b.attributes["messaging.message.id"]),
    );
    expect(run!.spanContext().traceId).toBe(traceId);
    expect(parentOf(run!)).toBe(spanId);
    expect(run!.kind).toBe(SpanKind.CONSUMER);
    expect(run!.status.code).toBe(SpanStatusCode.UNSET);
    expect(run!.attributes).toMatchObject({
      "tidewire.job.type": "email",
      "messaging.destination.name": "default",
      "messaging.message.id": String(job.id),
      "tidewire.job.attempt": 1,
    });
    expect(inside).toBe(run!.spanContext().spanId);
    expect(root!.parentSpanContext).toBeUndefined();
    expect(root!.spanContext().traceId).not.toBe(traceId);
  });

  it("keeps the parent of every job of addMany, and of a job another process added", async () => {
    const dir = tempDir();
    const added = await runNode(["--import", "tsx", "test/fixtures/traced-add.ts", join(dir, "jobs.db")]);
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    const child = JSON.parse(added.stdout) as { traceId: string; spanId: string; jobId: number };

    const queue = queueIn(dir);
    const parent = tracer.startSpan("import");
    const many = context.with(trace.setSpan(context.active(), parent), () =>
      queue.addMany(Array.from({ length: 150 }, (_, i) => ({ type: "row", payload: { i } }))),
    );
    parent.end();
    expect(new Set(many.map((j) => queue.get(j.id)!.trace))).toEqual(
      new Set([`00-${parent.spanContext().traceId}-${parent.spanContext().spanId}-01`]),
    );

    work(queue, { receipt: () => {}, row: () => {} });
    await waitFor(() => named("run receipt").length === 1 && named("run row").length === 150, "every run");
    const receipt = one("run receipt");
    expect(receipt.spanContext().traceId).toBe(child.traceId);
    expect(parentOf(receipt)).toBe(child.spanId);
    expect(receipt.attributes["messaging.message.id"]).toBe(String(child.jobId));
    expect(new Set(named("run row").map(parentOf))).toEqual(new Set([parent.spanContext().spanId]));
  });

  it("is a child of the add()'s span on a MemoryQueue too", async () => {
    const queue = new MemoryQueue();
    const parent = tracer.startSpan("in memory");
    const job = context.with(trace.setSpan(context.active(), parent), () => queue.add("ping"));
    parent.end();
    expect(job.trace).toBe(`00-${parent.spanContext().traceId}-${parent.spanContext().spanId}-01`);
    const worker = new Worker(queue, { ping: () => {} }, { pollIntervalMs: 5 }).start();
    cleanup.push(() => worker.stop());
    await waitFor(() => named("run ping").length === 1, "the run span");
    expect(parentOf(one("run ping"))).toBe(parent.spanContext().spanId);
  });

  it("ends with error status and the exception on failure, one span per attempt", async () => {
    const queue = queueIn(tempDir());
    const parent = tracer.startSpan("order");
    const job = context.with(trace.setSpan(context.active(), parent), () =>
      queue.add("charge", {}, { maxAttempts: 2 }),
    );
    parent.end();
    work(queue, {
      charge: () => {
        throw new Error("card declined");
      },
    });
    await waitFor(() => queue.get(job.id)!.state === "failed", "the job to fail");
    await waitFor(() => named("run charge").length === 2, "both attempts' spans");
    const attempts = named("run charge").sort(
      (a, b) => Number(a.attributes["tidewire.job.attempt"]) - Number(b.attributes["tidewire.job.attempt"]),
    );
    expect(attempts.map((s) => s.attributes["tidewire.job.attempt"])).toEqual([1, 2]);
    for (const s of attempts) {
      expect(parentOf(s)).toBe(parent.spanContext().spanId);
      expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: "card declined" });
      const exception = s.events.find((e) => e.name === "exception");
      expect(exception?.attributes).toMatchObject({ "exception.message": "card declined" });
    }
  });
});

describe("background loops", () => {
  it("a cycle of SyncManager's or RemoteSync's loop is a root, whoever started the loop", async () => {
    const dir = tempDir();
    const hub = hubOn(dir);
    cleanup.push(() => hub.replica.close());
    const client = openItems(dir, "client");
    cleanup.push(() => client.close());
    client.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const [transport] = MemoryTransport.pair(hub);
    const manager = new SyncManager(client, transport, { intervalMs: 10 });
    const remote = new RemoteSync(client, { target: `sqlite:${join(dir, "mirror.db")}` });
    cleanup.push(() => remote.close());
    cleanup.push(() => manager.stop());
    const boot = tracer.startSpan("boot");
    context.with(trace.setSpan(context.active(), boot), () => {
      manager.start();
      remote.start({ intervalSeconds: 1 });
    });
    boot.end();
    await waitFor(
      () => named("tidewire.sync.cycle").length >= 2 && named("tidewire.remote.push").length >= 1,
      "two sync cycles and a remote push",
    );
    for (const s of [...named("tidewire.sync.cycle"), ...named("tidewire.remote.push")]) {
      expect(s.parentSpanContext).toBeUndefined();
      expect(s.spanContext().traceId).not.toBe(boot.spanContext().traceId);
    }
  });
});

describe("sync over HTTP", () => {
  const TOKEN = "trace-test-token-00001";

  async function hubServer(dir: string) {
    const hub = hubOn(dir);
    const tokens = join(dir, "tokens.json");
    writeFileSync(tokens, JSON.stringify({ tokens: [{ token: TOKEN, buckets: "*", access: "read-write" }] }));
    const app = buildServer({
      store: hub.replica.store,
      queue: new Queue(hub.replica.store),
      logger: createLogger({ level: "silent" }),
      hub: { hub, auth: Auth.tokensFile(tokens) },
    });
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    cleanup.push(() => hub.replica.close());
    cleanup.push(() => app.close());
    return { hub, url };
  }

  it("a cycle has push and pull children, pull an apply child; the hub's request spans join the trace", async () => {
    const dir = tempDir();
    const { hub, url } = await hubServer(dir);
    hub.replica.store.db.exec("INSERT INTO items VALUES (1, 'from the hub', 1)");
    const client = openItems(dir, "client");
    cleanup.push(() => client.close());
    client.store.db.exec("INSERT INTO items VALUES (2, 'from the client', 2)");
    const manager = new SyncManager(client, new HttpTransport(url, { token: TOKEN }));
    cleanup.push(() => manager.stop());

    const result = await manager.syncOnce();
    expect(result).toMatchObject({ pushed: 1, pulled: 1 });
    // The server's spans end in onResponse, which may come after the client read the answer.
    await waitFor(() => named("POST /v1/pull").length > 0, "the hub's pull span");

    const cycle = one("tidewire.sync.cycle");
    const push = one("tidewire.sync.push");
    const pull = one("tidewire.sync.pull");
    const apply = one("tidewire.sync.apply");
    expect(cycle.parentSpanContext).toBeUndefined();
    expect(cycle.attributes).toMatchObject({ "tidewire.sync.pushed": 1, "tidewire.sync.pulled": 1 });
    expect([parentOf(push), parentOf(pull)]).toEqual([
      cycle.spanContext().spanId,
      cycle.spanContext().spanId,
    ]);
    expect(parentOf(apply)).toBe(pull.spanContext().spanId);
    expect(apply.attributes["tidewire.sync.changes"]).toBe(1);

    const server = spans().filter((s) => s.kind === SpanKind.SERVER);
    expect(new Set(server.map((s) => s.name))).toEqual(
      new Set(["POST /v1/handshake", "POST /v1/push", "POST /v1/pull"]),
    );
    for (const s of server) {
      expect(s.spanContext().traceId).toBe(cycle.spanContext().traceId);
      expect(s.attributes).toMatchObject({ "http.response.status_code": 200 });
      expect(JSON.stringify(s.attributes)).not.toContain(TOKEN);
    }
    expect(parentOf(one("POST /v1/push"))).toBe(push.spanContext().spanId);
    expect(named("POST /v1/pull").every((s) => parentOf(s) === pull.spanContext().spanId)).toBe(true);
  });

  it("names a refused request by its route, sets no error for a 4xx, and records no URL or token", async () => {
    const { url } = await hubServer(tempDir());
    const refused = await fetch(`${url}/v1/pull?token=${TOKEN}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer wrong-token-000000000" },
      body: "{}",
    });
    expect(refused.status).toBe(401);
    const missing = await fetch(`${url}/v1/nowhere/${TOKEN}`);
    expect(missing.status).toBe(404);
    await waitFor(() => spans().length === 2, "both request spans");
    const pull = one("POST /v1/pull");
    expect(pull.attributes).toEqual({
      "http.request.method": "POST",
      "http.route": "/v1/pull",
      "http.response.status_code": 401,
    });
    expect(pull.status.code).toBe(SpanStatusCode.UNSET);
    expect(one("GET").attributes["http.response.status_code"]).toBe(404);
    expect(JSON.stringify(spans().map((s) => [s.name, s.attributes]))).not.toContain(TOKEN);
  });
});

describe("a remote push", () => {
  it("has a span of its own, with error status when the target fails", async () => {
    const dir = tempDir();
    const replica = openItems(dir, "source");
    cleanup.push(() => replica.close());
    replica.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const ok = new RemoteSync(replica, { target: `sqlite:${join(dir, "mirror.db")}` });
    cleanup.push(() => ok.close());
    const pushed = await ok.push();
    const span = one("tidewire.remote.push");
    expect(span.attributes).toMatchObject({
      "tidewire.remote.backend": "sqlite",
      "tidewire.remote.target": ok.target.id,
      "tidewire.remote.mode": "full",
      "tidewire.remote.payloads": pushed.payloads,
    });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);

    exporter.reset();
    const down = new RemoteSync(replica, { target: "postgres://postgres:secret@127.0.0.1:1/test" });
    cleanup.push(() => down.close());
    await expect(down.push()).rejects.toThrow(/cannot reach/);
    const failed = one("tidewire.remote.push");
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(JSON.stringify(failed.attributes)).not.toContain("secret");
  });
});

describe("tidewire serve --trace", () => {
  const CLI = join(import.meta.dirname, "..", "dist", "cli", "main.js");
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  });

  it("gives the hub's requests spans, in the caller's trace, through the SDK the process registered", async () => {
    const dir = tempDir();
    const file = join(dir, "spans.jsonl");
    const token = "serve-trace-token-0001";
    const daemon = spawn(
      process.execPath,
      [
        "--import",
        "./test/fixtures/otel-file-sdk.mjs",
        CLI,
        "serve",
        "--trace",
        "--db",
        join(dir, "hub.db"),
        "--port",
        "0",
        "--token",
        token,
      ],
      { env: { ...process.env, OTEL_SPANS_FILE: file }, stdio: ["ignore", "pipe", "pipe"] },
    );
    cleanup.push(() => {
      if (daemon.exitCode === null) daemon.kill("SIGKILL");
    });
    const url = await listeningUrl(daemon);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parentId = "00f067aa0ba902b7";
    const res = await fetch(`${url}/v1/status`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${parentId}-01` },
    });
    expect(res.status).toBe(200);
    const lines = () =>
      existsSync(file)
        ? readFileSync(file, "utf8")
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l) as { name: string; traceId: string; parent: string | null })
        : [];
    await waitFor(() => lines().some((s) => s.name === "GET /v1/status"), "the status request's span", {
      timeoutMs: 15_000,
    });
    const span = lines().find((s) => s.name === "GET /v1/status")!;
    expect(span).toMatchObject({ traceId, parent: parentId, kind: SpanKind.SERVER });
    expect(readFileSync(file, "utf8")).not.toContain(token);
  });

  it("refuses --trace, exit 1 with one line, when @opentelemetry/api is absent", async () => {
    const dir = tempDir();
    const run = await runNode(
      ["--import", "./test/fixtures/otel-register.mjs", CLI, "serve", "--trace", "--db", join(dir, "x.db")],
      undefined,
      { OTEL_HOOK_LOG: join(dir, "hook.log"), OTEL_HOOK_ABSENT: "1" },
    );
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      "tidewire: --trace needs the package @opentelemetry/api installed beside tidewire",
    );
    expect(existsSync(join(dir, "x.db"))).toBe(false);
  });
});

describe("without enableTracing(), or without the api", () => {
  const child = (dir: string, log: string, env: Record<string, string>, ...args: string[]) =>
    runNode(
      [
        "--import",
        "tsx",
        "--import",
        "./test/fixtures/otel-register.mjs",
        "test/fixtures/untraced-work.ts",
        dir,
        ...args,
      ],
      undefined,
      { OTEL_HOOK_LOG: log, ...env },
    );
  const importers = (log: string) =>
    existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").filter(Boolean) : [];

  it("never imports @opentelemetry/api until asked, and does when asked", async () => {
    const dir = tempDir();
    const off = join(dir, "off.log");
    const run = await child(dir, off, {});
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ enabled: false, tracing: false, trace: null });
    expect(importers(off).filter((u) => u.includes("/src/"))).toEqual([]);

    // The control: the same work after enableTracing() shows the import the hooks look for.
    const on = join(dir, "on.log");
    const asked = await child(tempDir(), on, {}, "enable");
    expect(asked.stderr).toBe("");
    expect(JSON.parse(asked.stdout)).toMatchObject({ enabled: true, tracing: true });
    expect(importers(on).filter((u) => u.includes("/src/"))).toEqual([
      expect.stringMatching(/\/src\/trace\.ts$/),
    ]);
  });

  it("with the api absent, enableTracing() resolves false and everything works untraced", async () => {
    const dir = tempDir();
    const log = join(dir, "absent.log");
    const run = await child(dir, log, { OTEL_HOOK_ABSENT: "1" }, "enable");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ enabled: false, tracing: false, trace: null });
    expect(importers(log).filter((u) => u.includes("/src/"))).toHaveLength(1);
  });
});

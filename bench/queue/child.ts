/**
 * One system, one run, in a process of its own (started by run.ts with fork):
 * a warm-up pass on a few jobs, then the measured pass on N, then cleanup.
 * The outcome goes back to the parent as one IPC message.
 */
import { type Payload, Skip, type System } from "./common.js";
import type { ChildRequest, ChildResult, Figures } from "./protocol.js";
import { SYSTEMS } from "./systems/index.js";

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function settle(value: unknown): Promise<void> {
  if (value instanceof Promise) await value;
}

/** Single adds, bulk adds, then processing, each timed on its own; N jobs each. */
async function measure(system: System, n: number, chunk: number): Promise<Figures> {
  await system.reset();
  gc();
  let t0 = performance.now();
  for (let i = 0; i < n; i++) await settle(system.add({ i }));
  const single = n / ((performance.now() - t0) / 1000);

  await system.reset();
  const chunks: Payload[][] = [];
  for (let i = 0; i < n; i += chunk) {
    chunks.push(Array.from({ length: Math.min(chunk, n - i) }, (_, k) => ({ i: i + k })));
  }
  gc();
  t0 = performance.now();
  for (const c of chunks) await settle(system.addBulk(c));
  const bulk = n / ((performance.now() - t0) / 1000);

  const queued = await system.remaining();
  if (queued !== n) throw new Error(`after the bulk add ${queued} jobs are queued, expected ${n}`);
  gc();
  t0 = performance.now();
  const stop = await system.process(n);
  const processed = n / ((performance.now() - t0) / 1000);
  await stop();
  const left = await system.remaining();
  if (left !== 0) throw new Error(`${left} jobs are still unfinished after processing`);
  return { single, bulk, processed };
}

async function main(): Promise<ChildResult> {
  const req = JSON.parse(process.argv[2] ?? "") as ChildRequest;
  const entry = SYSTEMS.find((s) => s.name === req.system);
  if (!entry) return { kind: "error", message: `unknown system ${req.system}` };
  const system = entry.make(req.config);
  try {
    await system.open();
  } catch (err) {
    if (err instanceof Skip) return { kind: "skipped", reason: err.message };
    throw err;
  }
  try {
    if (req.warmup > 0) await measure(system, req.warmup, req.config.chunk);
    const figures = await measure(system, req.config.n, req.config.chunk);
    return { kind: "result", figures };
  } finally {
    await system.close();
  }
}

const result: ChildResult = await main().catch(
  (err: unknown): ChildResult => ({
    kind: "error",
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  }),
);
// Exit explicitly: some peers keep timers or sockets open after closing.
process.send?.(result, () => process.exit(0));
if (!process.send) {
  console.log(JSON.stringify(result));
  process.exit(0);
}

/**
 * Tidewire, as a user gets it: the built package (bench/node_modules/tidewire
 * links to the repository root, so run `npm run build` first), a durable file
 * with the Store's defaults (WAL, synchronous NORMAL), a Worker with the given
 * concurrency and its other options at their defaults.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type BenchConfig, noop, type Payload, Skip, type System } from "../common.js";

/** Types come from the source; the code that runs is the built package. */
type TidewireModule = typeof import("../../../src/index.js");

/** This build (the package bench/ links to), or the one built in `base` (its dist/). */
export async function loadTidewire(base?: string): Promise<TidewireModule> {
  const specifier = base === undefined ? "tidewire" : pathToFileURL(join(base, "dist/index.js")).href;
  try {
    return (await import(specifier)) as TidewireModule;
  } catch (err) {
    throw new Error(
      `cannot load the built tidewire package (run \`npm run build\` and \`npm --prefix bench install\`): ${(err as Error).message}`,
    );
  }
}

export function sqliteFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`, `${path}-journal`];
}

export function removeSqlite(path: string): void {
  for (const f of sqliteFiles(path)) rmSync(f, { force: true });
}

/**
 * `variant`: "this" build as is; "base", the build in config.base (a paired run
 * against another commit); "api", this build after enableTracing() with no SDK
 * registered (the api's no-op tracer: what tracing costs an app that loads the api
 * and exports nothing).
 */
export function tidewire(config: BenchConfig, variant: "this" | "base" | "api" = "this"): System {
  let tw: TidewireModule;
  let store: InstanceType<TidewireModule["Store"]> | undefined;
  let queue: InstanceType<TidewireModule["Queue"]>;
  let generation = 0;
  let path = "";

  const openFresh = () => {
    store?.close();
    if (path) removeSqlite(path);
    path = join(config.tmpDir, `tidewire-${generation++}.db`);
    store = tw.openStore(path);
    queue = new tw.Queue(store, "bench");
  };

  return {
    async open() {
      if (variant === "base" && config.base === undefined) throw new Skip("no --base build given");
      tw = await loadTidewire(variant === "base" ? config.base : undefined);
      if (variant === "api" && !(await tw.enableTracing()))
        throw new Skip("@opentelemetry/api is not installed");
      openFresh();
    },
    async reset() {
      openFresh();
    },
    add(payload: Payload) {
      return queue.add("noop", payload);
    },
    addBulk(payloads: Payload[]) {
      return queue.addMany(payloads.map((payload) => ({ type: "noop", payload })));
    },
    async process(n: number) {
      const worker = new tw.Worker(queue, { noop }, { concurrency: config.concurrency });
      let done = 0;
      // "completed" is emitted after the batch of outcomes has been written.
      const finished = new Promise<void>((resolve, reject) => {
        worker.on("completed", () => {
          if (++done >= n) resolve();
        });
        worker.on("failed", (job: { id: number }, err: Error) => {
          reject(new Error(`job ${job.id} failed: ${err.message}`));
        });
        worker.on("error", (err: Error) => reject(err));
      });
      worker.start();
      const stop = () => worker.stop();
      try {
        await finished;
      } catch (err) {
        await stop();
        throw err;
      }
      return stop;
    },
    remaining() {
      const s = queue.stats();
      return s.pending + s.running;
    },
    async close() {
      store?.close();
      store = undefined;
      if (path) removeSqlite(path);
    },
  };
}

/**
 * Optional dependencies: the backend packages that only some features need
 * (pg, @libsql/client, ioredis, ws) are imported on first use, never at the
 * top of a module, so `import { Queue } from "tidewire"` loads none of them
 * (test/entry-load.test.ts proves it).
 *
 * Contract: `loadOptional(pkg, feature, load)` resolves to what `load()` (a
 * literal `import("pkg")`, so TypeScript types it) resolves to; Node caches the
 * module, so later calls cost a resolved promise. If `pkg` itself is not
 * installed it rejects with MissingDependencyError naming the package and the
 * feature; any other failure (a broken install, a missing dependency *of* the
 * package) passes through unchanged, as it would have at a static import.
 */
import { MissingDependencyError } from "./errors.js";

export async function loadOptional<T>(pkg: string, feature: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e?.code === "ERR_MODULE_NOT_FOUND" && e.message?.includes(`'${pkg}'`)) {
      throw new MissingDependencyError(pkg, feature);
    }
    throw err;
  }
}

/** Every system the benchmark knows, in the order it runs them. */
import type { SystemFactory } from "../common.js";
import { bullmq } from "./bullmq.js";
import { floor } from "./floor.js";
import { graphileWorker } from "./graphile.js";
import { pgBoss } from "./pgboss.js";
import { plainjob } from "./plainjob.js";
import { tidewire } from "./tidewire.js";

export interface SystemEntry {
  name: string;
  label: string;
  make: SystemFactory;
}

export const SYSTEMS: readonly SystemEntry[] = [
  { name: "tidewire", label: "Tidewire (file, WAL, sync NORMAL)", make: tidewire },
  // Paired runs: the same measurement of another build (--base), and of this one with tracing on.
  { name: "tidewire-base", label: "Tidewire, the build in --base", make: (c) => tidewire(c, "base") },
  {
    name: "tidewire-api",
    label: "Tidewire, enableTracing() with no SDK registered",
    make: (c) => tidewire(c, "api"),
  },
  { name: "floor", label: "floor: bare better-sqlite3 loop", make: floor },
  { name: "bullmq", label: "BullMQ 6.7.0 (Redis)", make: bullmq },
  {
    name: "graphile",
    label: "graphile-worker 0.17.3, default",
    make: (config) => graphileWorker(config, false),
  },
  {
    name: "graphile-batched",
    label: "graphile-worker 0.17.3, batched",
    make: (config) => graphileWorker(config, true),
  },
  { name: "pgboss", label: "pg-boss 10.4.2 (batch 100, poll 0.5 s)", make: pgBoss },
  { name: "plainjob", label: "plainjob 0.0.14 (better-sqlite3)", make: plainjob },
];

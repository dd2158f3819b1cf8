/** Messages between run.ts and the child process that measures one system. */
import type { BenchConfig } from "./common.js";

/** Jobs per second. */
export interface Figures {
  single: number;
  bulk: number;
  processed: number;
}

export interface ChildRequest {
  system: string;
  config: BenchConfig;
  /** Jobs in the untimed warm-up pass (0: none). */
  warmup: number;
}

export type ChildResult =
  | { kind: "result"; figures: Figures }
  | { kind: "skipped"; reason: string }
  | { kind: "error"; message: string };

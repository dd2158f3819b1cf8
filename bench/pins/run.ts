/**
 * bench/pins: what storing a pin costs against writing the same bytes to a
 * file and fsyncing it, in one invocation on this machine.
 *
 *   node --import tsx bench/pins/run.ts [--mib 64] [--rounds 4]
 *
 * - reference: MIB MiB in 64 KiB chunks, each awaited `FileHandle.write`,
 *   then `sync()` — what any careful writer pays;
 * - PinStore.put: the same bytes as a Readable of 64 KiB chunks — hashing,
 *   size check, temp file, fsync, rename, two folder fsyncs.
 *
 * Rounds alternate the two; figures are medians, and the ratio is the one to quote.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { PinStore } from "../../src/pins/index.js";

const { values: args } = parseArgs({
  options: { mib: { type: "string", default: "64" }, rounds: { type: "string", default: "4" } },
});
const BYTES = Number(args.mib) * 1024 * 1024;
const ROUNDS = Number(args.rounds);
const CHUNK = 64 * 1024;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-pins-"));
const source = randomBytes(BYTES);
const chunks = (b: Buffer) => {
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; at += CHUNK) out.push(b.subarray(at, at + CHUNK));
  return out;
};

async function reference(i: number): Promise<number> {
  const parts = chunks(source);
  const t0 = performance.now();
  const fh = await open(join(dir, `plain-${i}`), "w");
  for (const c of parts) await fh.write(c);
  await fh.sync();
  await fh.close();
  return performance.now() - t0;
}

const store = new PinStore(join(dir, "pins"), { maxBytes: BYTES });
async function put(i: number): Promise<number> {
  const bytes = Buffer.from(source);
  bytes.writeInt32BE(i); // a new pin each round, not a rename over the last one
  const stream = Readable.from(chunks(bytes));
  const t0 = performance.now();
  await store.put(stream);
  return performance.now() - t0;
}

try {
  await reference(-1);
  await put(-1);
  const plain: number[] = [];
  const pinned: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    plain.push(await reference(i));
    pinned.push(await put(i));
  }
  const p = median(plain);
  const q = median(pinned);
  const mbs = (ms: number) => (BYTES / 1024 / 1024 / (ms / 1000)).toFixed(0);
  console.log(`${args.mib} MiB, ${ROUNDS} rounds, load ${loadavg()[0]!.toFixed(1)}`);
  console.log(`write+fsync (reference): ${p.toFixed(0)} ms (${mbs(p)} MiB/s)`);
  console.log(`PinStore.put:            ${q.toFixed(0)} ms (${mbs(q)} MiB/s)`);
  console.log(`ratio put / reference:   ${(q / p).toFixed(2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

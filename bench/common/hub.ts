/**
 * A hub for the benchmarks: `node dist/cli/main.js serve --insecure` as a
 * separate process on a free loopback port, logging at warn (one info line
 * per request would cost it CPU), without rate limit. Build the root first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface HubProcess {
  url: string;
  child: ChildProcess;
}

export async function startHub(db: string): Promise<HubProcess> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  const child = spawn(
    process.execPath,
    [
      ...profileArgs(),
      CLI,
      "serve",
      "--db",
      db,
      "--port",
      String(port),
      "--insecure",
      "--rate-limit",
      "0",
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { url, child };
    } catch {
      if (i > 600 || child.exitCode !== null) throw new Error("the hub did not start");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function stopHub(h: HubProcess): Promise<void> {
  h.child.kill("SIGTERM");
  await new Promise((r) => h.child.once("exit", r));
}

/** `TW_BENCH_PROF=dir` makes each benchmark process write a CPU profile there. */
export function profileArgs(): string[] {
  const dir = process.env.TW_BENCH_PROF;
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}

/**
 * A `tidewire serve` process seen from a test: its log (JSON lines on
 * stdout) as it arrives, waited on line by line, its stderr and its exit.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";

export interface LogLine {
  msg: string;
  [field: string]: unknown;
}

/** A `tidewire serve` child: its JSON log lines as they come, its stderr, and how it exited. */
export class ServeProcess {
  readonly lines: LogLine[] = [];
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    let partial = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      partial += chunk;
      const complete = partial.split("\n");
      partial = complete.pop() ?? "";
      for (const line of complete) if (line.trim()) this.lines.push(JSON.parse(line));
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first log line whose msg matches `pattern` (and `where`), waiting up to `ms`. */
  async line(pattern: RegExp, where: (l: LogLine) => boolean = () => true, ms = 15_000): Promise<LogLine> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => pattern.test(l.msg) && where(l));
      if (hit) return hit;
      const { exitCode, signalCode } = this.child;
      if (Date.now() > deadline || exitCode !== null || signalCode !== null) {
        const last = this.lines.slice(-5).map((l) => l.msg);
        throw new Error(
          `no log line matching ${pattern} (exit code ${exitCode}, signal ${signalCode}); ` +
            `last lines: ${JSON.stringify(last)}; stderr: ${this.stderr}`,
        );
      }
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  async url(): Promise<string> {
    const line = await this.line(/listening on/);
    return /listening on (http:\/\/[^,\s]+)/.exec(line.msg)![1]!;
  }
}

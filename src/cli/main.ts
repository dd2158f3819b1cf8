#!/usr/bin/env node
/**
 * The `tidewire` command (the package's bin).
 *
 * Contract (the CLI's, as README.md's "The command line" states it): one
 * grammar, `tidewire <command> <db> [options]` and `tidewire <group> <verb>
 * <db> [args]` (group.ts); durations written with a unit (io.ts `duration`).
 * Exit 0 on success, 1 on a failure at run time, 2 on a usage error:
 * commander's own (unknown option, bad value, missing argument) and the
 * library's InvalidArgumentError alike. With --json, stdout carries
 * exactly one JSON document, `{ ok: false, error }` when the command failed.
 * Errors go to stderr as one line, `tidewire: <message>`; the stack trace only
 * with --verbose. The command tree itself is built in program.ts.
 */
import { CommanderError } from "commander";
import { InvalidArgumentError } from "../errors.js";
import { printJson } from "./io.js";
import { buildProgram } from "./program.js";

const USAGE = 2;
const FAILURE = 1;

export async function main(args: string[]): Promise<number> {
  // Read from raw argv: a parse that fails part-way has not recorded its options.
  const json = args.includes("--json");
  const verbose = args.includes("--verbose");
  const program = buildProgram();
  try {
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (err) {
    return report(err, json, verbose);
  }
}

function report(err: unknown, json: boolean, verbose: boolean): number {
  if (err instanceof CommanderError) {
    // Commander has already printed the help, the version or the error.
    if (err.exitCode === 0) return 0;
    if (json) printJson({ ok: false, error: { code: "ERR_USAGE", message: commanderMessage(err) } });
    return USAGE;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  const status = e instanceof InvalidArgumentError ? USAGE : FAILURE;
  process.stderr.write(`tidewire: ${verbose && e.stack ? e.stack : e.message}\n`);
  if (json) {
    const code = (e as { code?: unknown }).code;
    printJson({
      ok: false,
      error: { code: typeof code === "string" ? code : "ERR_FAILED", message: e.message },
    });
  }
  return status;
}

function commanderMessage(err: CommanderError): string {
  if (err.code === "commander.help") return "a command is required; see tidewire --help";
  return err.message.replace(/^error: /, "").split("\n")[0] ?? err.message;
}

process.exitCode = await main(process.argv.slice(2));

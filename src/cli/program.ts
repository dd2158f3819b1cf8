/**
 * The `tidewire` command tree: every command and group, registered on one
 * commander program, with the grammar's help (group.ts) and the error output
 * main.ts relies on.
 *
 * Contract: building the tree runs nothing and opens nothing, so a test can
 * walk it (usage lines, option parsers) in process; main.ts parses argv with it.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerClock } from "./clock.js";
import { registerConflicts } from "./conflicts.js";
import { grammarHelp } from "./group.js";
import { registerInit, registerUntrack } from "./init.js";
import { registerJobs } from "./jobs.js";
import { registerMesh } from "./mesh.js";
import { registerPeers } from "./peers.js";
import { registerPins } from "./pins.js";
import { registerRemote } from "./remote.js";
import { registerServe } from "./serve.js";
import { registerStatus } from "./status.js";
import { registerSync } from "./sync.js";
import { registerVacuum } from "./vacuum.js";

export function buildProgram(): Command {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  const program = new Command("tidewire")
    .description("Keep SQLite databases in sync, and run that work on a durable job queue in SQLite")
    .version(pkg.version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help for the command")
    .helpCommand(false)
    .configureHelp(grammarHelp)
    .option("--verbose", "print stack traces with errors, and debug logs from serve")
    // Set before any subcommand exists: subcommands copy these settings when created.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`tidewire: ${text.replace(/^error: /, "")}`) });
  registerConflicts(program);
  registerClock(program);
  registerInit(program);
  registerUntrack(program);
  registerJobs(program);
  registerPeers(program);
  registerPins(program);
  registerMesh(program);
  registerRemote(program);
  registerServe(program);
  registerStatus(program);
  registerSync(program);
  registerVacuum(program);
  return program;
}

/**
 * The CLI's one grammar: `tidewire <command> <db> [options]` for a single
 * command and `tidewire <group> <verb> <db> [args] [options]` for a group
 * (jobs, peers, pins, remote, conflicts, clock), as README.md states it.
 *
 * Contract: `commandGroup` makes a group whose help lists its verbs; a
 * missing or unknown verb is a usage error (exit 2) naming the verbs there
 * are, and an argv in another word order (`jobs app.db list`) is a usage
 * error that shows the order to use — it is never rewritten and run. `verb`
 * adds one verb taking the database first. `grammarHelp` (set on the program,
 * inherited by every command) writes each usage line in that order, operands
 * before options.
 */
import type { Argument, Command, HelpConfiguration } from "commander";

/**
 * A group of verbs, `tidewire <name> <verb> <db> ...`: commander dispatches a
 * known verb itself; the action below is reached only when none came first.
 */
export function commandGroup(program: Command, name: string, description: string): Command {
  return (
    program
      .command(name)
      .description(description)
      // Hidden from the help (no description): it only collects what stood where a verb belongs.
      .argument("[words...]")
      // Options meant for a verb but written after a misplaced one reach the sentence below.
      .allowUnknownOption()
      .action((words: string[], _flags, group: Command) => {
        group.error(misplaced(group, words), { exitCode: 2, code: "commander.usage" });
      })
  );
}

/** The sentence for a group called without a known verb first. */
function misplaced(group: Command, words: string[]): string {
  const name = group.name();
  const verbs = group.commands.map((c) => c.name());
  const known = `one of ${verbs.join(", ")}`;
  const at = words.findIndex((w) => verbs.includes(w));
  if (at > 0) {
    const rest = words.filter((_, i) => i !== at).join(" ");
    return `the command comes first: tidewire ${name} ${words[at]} ${rest}`;
  }
  const first = words.find((w) => !w.startsWith("-"));
  if (first === undefined) return `${name} needs a command, ${known}: tidewire ${name} <command> <db>`;
  return `${name}: unknown command '${first}', expected ${known}`;
}

/** A verb of a group: `tidewire <group> <name> <db>`, with --json. */
export function verb(
  group: Command,
  name: string,
  description: string,
  db = "the database file (it must exist)",
): Command {
  return group
    .command(name)
    .description(description)
    .argument("<db>", db)
    .option("--json", "print one JSON document on stdout");
}

/**
 * Usage lines in the grammar's order: `tidewire jobs list <db> [options]` in
 * a verb's help, `list <db> [options]` in its group's list of commands.
 * Commander's own put the options first and leave the database out of a group's line.
 */
export const grammarHelp: HelpConfiguration = {
  commandUsage: (cmd) => [...ancestors(cmd), cmd.name(), usage(cmd)].join(" "),
  subcommandTerm: (cmd) => `${cmd.name()} ${usage(cmd)}`,
};

function ancestors(cmd: Command): string[] {
  return cmd.parent ? [...ancestors(cmd.parent), cmd.parent.name()] : [];
}

/** A command's operands, then `[options]`; a group's `<command> <db> ...`. */
function usage(cmd: Command): string {
  if (cmd.commands.length > 0) return cmd.parent ? "<command> <db> [args] [options]" : "[options] <command>";
  const operands = cmd.registeredArguments.map(operand);
  return [...operands, "[options]"].join(" ");
}

function operand(arg: Argument): string {
  const name = `${arg.name()}${arg.variadic ? "..." : ""}`;
  return arg.required ? `<${name}>` : `[${name}]`;
}

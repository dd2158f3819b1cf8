/**
 * Command groups whose subcommands follow a database operand: `tidewire jobs
 * <db> list`, `tidewire peers <db> add`, `tidewire pins <db> get`.
 *
 * Contract: `commandGroup` builds such a group, whose help shows that word
 * order and which answers a missing or unknown subcommand with a usage error
 * naming the ones there are. `dbFirstArgv` rewrites an argv in the contract's
 * order into one commander can dispatch; any other argv passes unchanged.
 */
import type { Command } from "commander";

/** The groups made by commandGroup, the only commands whose argv dbFirstArgv rewrites. */
const groups = new WeakSet<Command>();

/**
 * A command whose subcommands follow a database operand, `tidewire <name> <db>
 * <command>`: its help shows that order, and an unknown or
 * missing command is a usage error naming the ones there are.
 */
export function commandGroup(
  program: Command,
  name: string,
  description: string,
  actions: string[],
): Command {
  const group = program
    .command(name)
    .description(description)
    .usage("<db> <command> [options]")
    .argument("[db]", "the database file")
    .argument("[command]", `one of ${actions.join(", ")}`)
    .configureHelp({
      // Commander would print the subcommand before <db>; show the order the contract uses.
      commandUsage: (cmd) =>
        cmd.name() === name
          ? `tidewire ${name} ${cmd.usage()}`
          : `tidewire ${name} <db> ${cmd.name()} ${cmd.usage()}`,
      subcommandTerm: (cmd) => `${cmd.name()} ${cmd.usage()}`,
    })
    .action((db: string | undefined, action: string | undefined, _opts, cmd: Command) => {
      // Reached only when no known command followed <db>.
      if (db === undefined)
        cmd.error(`${name} needs a database file and a command; see tidewire ${name} --help`);
      if (action === undefined) cmd.error(`${name} ${db}: missing command, one of ${actions.join(", ")}`);
      cmd.error(`${name}: unknown command '${action}', expected one of ${actions.join(", ")}`);
    });
  groups.add(group);
  return group;
}

/** A subcommand of a group: `tidewire <group> <db> <name> <usage>`, with --json. */
export function subcommand(group: Command, name: string, usage: string, description: string): Command {
  return group
    .command(name)
    .description(description)
    .usage(usage)
    .argument("<db>", "the database file (it must exist)")
    .option("--json", "print one JSON document on stdout");
}

/**
 * The contract's word order, `jobs <db> list`, puts an operand before the
 * subcommand, which commander cannot dispatch. This moves the command word in
 * front of <db> (`jobs list <db>`), so each command keeps its own options and
 * --help.
 */
export function dbFirstArgv(program: Command, args: string[]): string[] {
  const at = args.findIndex((a) => !a.startsWith("-"));
  const group = at < 0 ? undefined : program.commands.find((c) => c.name() === args[at] && groups.has(c));
  if (!group) return args;
  const takesValue = new Set<string>();
  for (const cmd of [group, ...group.commands]) {
    for (const o of cmd.options) {
      if (!o.required && !o.optional) continue;
      if (o.long) takesValue.add(o.long);
      if (o.short) takesValue.add(o.short);
    }
  }
  const operands: number[] = [];
  for (let i = at + 1; i < args.length && operands.length < 2; i++) {
    const arg = args[i] as string;
    if (arg === "--") break;
    if (arg.startsWith("-")) {
      if (takesValue.has(arg)) i++;
      continue;
    }
    operands.push(i);
  }
  const [dbAt, actionAt] = operands;
  if (dbAt === undefined || actionAt === undefined) return args;
  const names = group.commands.map((c) => c.name());
  if (names.includes(args[dbAt] as string) || !names.includes(args[actionAt] as string)) return args;
  const out = args.slice();
  const [action] = out.splice(actionAt, 1);
  out.splice(at + 1, 0, action as string);
  return out;
}

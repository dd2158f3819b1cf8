/**
 * The CLI's one grammar, checked on the whole command tree in process (no
 * command runs): every usage line reads `tidewire <command> <db>` or
 * `tidewire <group> <verb> <db>`, every duration flag takes a number with its
 * unit and refuses a bare one, `--remote` has one meaning, and README's
 * command lines follow the same grammar. How argv in another order is
 * refused is run end to end in cli-jobs.test.ts.
 */
import { readFileSync } from "node:fs";
import type { Command, Option } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../src/cli/program.js";

const program = buildProgram();
/** The commands that take no database operand. */
const NO_DB = new Set(["serve"]);

const groups = program.commands.filter((c) => c.commands.length > 0);
const leaves: Array<[string, Command]> = program.commands.flatMap((c) =>
  c.commands.length > 0
    ? c.commands.map((v): [string, Command] => [`${c.name()} ${v.name()}`, v])
    : [[c.name(), c]],
);

function usageLine(cmd: Command): string {
  return cmd.helpInformation().split("\n")[0] ?? "";
}

describe("one grammar", () => {
  it("has the groups the design names, each with its verbs", () => {
    const verbs = Object.fromEntries(groups.map((g) => [g.name(), g.commands.map((v) => v.name())]));
    expect(verbs).toMatchObject({
      jobs: expect.arrayContaining(["list", "stats", "retry", "cancel", "cleanup"]),
      peers: ["list", "add", "remove"],
      pins: expect.arrayContaining(["get"]),
      remote: expect.arrayContaining(["push", "pull", "add", "list", "remove"]),
      conflicts: ["list", "show", "restore"],
      clock: ["reset"],
    });
  });

  it.each(groups.map((g) => [g.name(), g]))("tidewire %s --help shows <command> then <db>", (name, g) => {
    expect(usageLine(g)).toBe(`Usage: tidewire ${name} <command> <db> [args] [options]`);
    // The group's list of verbs shows each with its database first too.
    for (const v of g.commands) expect(g.helpInformation()).toContain(`${v.name()} <db>`);
  });

  it.each(leaves)("tidewire %s --help shows the database right after the command", (path, cmd) => {
    const line = usageLine(cmd);
    if (NO_DB.has(path)) expect(line).toBe(`Usage: tidewire ${path} [options]`);
    else expect(line).toMatch(new RegExp(`^Usage: tidewire ${path} <db>( \\S+)* \\[options\\]$`));
    expect(cmd.registeredArguments[0]?.name()).toBe(NO_DB.has(path) ? undefined : "db");
  });
});

describe("durations", () => {
  const durationFlags: Array<[string, Option]> = leaves.flatMap(([path, cmd]) =>
    cmd.options
      .filter((o) => o.flags.includes("<duration>"))
      .map((o): [string, Option] => [`${path} ${o.long}`, o]),
  );

  it("every flag that is a span of time is a <duration>", () => {
    expect(durationFlags.length).toBeGreaterThan(15);
    const timeLike = /interval|timeout|older-than|grace|drift|backoff|wait|scan/;
    for (const [path, cmd] of leaves)
      for (const o of cmd.options)
        if (timeLike.test(o.long ?? "")) expect(o.flags, `${path} ${o.long}`).toContain("<duration>");
  });

  it.each(durationFlags)("%s takes 500ms, 30s, 5m, 12h, 7d and refuses a bare number", (_path, option) => {
    const parse = (value: string) => option.parseArg!(value, undefined as never) as number;
    expect(parse("500ms")).toBe(500);
    expect(parse("30s")).toBe(30_000);
    expect(parse("5m")).toBe(300_000);
    expect(parse("12h")).toBe(43_200_000);
    expect(parse("7d")).toBe(604_800_000);
    expect(() => parse("60")).toThrow(/duration with its unit, such as 60s or 60ms/);
    expect(() => parse("2 days")).toThrow(/Expected a duration such as 500ms, 30s, 5m, 12h or 7d/);
    expect(() => parse("-5m")).toThrow(/Expected a duration/);
  });
});

describe("one meaning per flag", () => {
  it("--remote is the hub's URL, in sync only; D1's flags are --d1-*", () => {
    const where = (long: string) =>
      leaves.filter(([, cmd]) => cmd.options.some((o) => o.long === long)).map(([path]) => path);
    expect(where("--remote")).toEqual(["sync"]);
    expect(where("--local")).toEqual([]);
    expect(where("--config")).toEqual([]);
    expect(where("--d1-remote")).toEqual(["remote push", "remote pull", "remote add"]);
  });
});

describe("README", () => {
  it("writes every command line in the grammar", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const block = readme.split("## The command line")[1]?.split("```")[1] ?? "";
    const lines = block.split("\n").filter((l) => l.startsWith("tidewire "));
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) {
      const [, name, second, third] = line.split(/\s+/);
      const cmd = program.commands.find((c) => c.name() === name);
      expect(cmd, line).toBeDefined();
      if (cmd!.commands.length === 0) {
        if (!NO_DB.has(name!)) expect(second, line).toBe("<db>");
        continue;
      }
      // `jobs list <db>`, or alternatives: `jobs retry|cancel <db>`.
      const verbs = second!.split("|");
      for (const v of verbs)
        expect(
          cmd!.commands.map((c) => c.name()),
          line,
        ).toContain(v);
      expect(third, line).toBe("<db>");
    }
  });
});

/**
 * The docs stay true to the tree:
 * - every `src/**\/*.ts` has a row in docs/architecture.md's file table, and
 *   every row names a file that exists;
 * - the Mermaid layer diagram draws exactly the folder-level import edges that
 *   dependency-cruiser (the cycle checker, with its own config) reports;
 * - a state diagram draws exactly the moves of the table it names;
 * - docs/product.md names every metric and HTTP route the code registers;
 * - every `src/…` path named in the docs or README exists.
 *
 * A layer-diagram node names what it stands for in its label: `queue/` for a
 * folder of src/ (its subfolders included), `store.ts` for a file at the root
 * of src/. Each failure message names the file, edge, move, metric or route
 * to add or remove.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ARCHITECTURE = "docs/architecture.md";
const architecture = readFileSync(join(ROOT, ARCHITECTURE), "utf8");

/** Every .ts file under src/, as `src/…` paths. */
function sourceFiles(dir = join(ROOT, "src")): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [relative(ROOT, path).split("\\").join("/")] : [];
  });
}

/** The text of the `## <title>` section, up to the next `## ` heading. */
function section(markdown: string, title: string): string {
  const start = markdown.search(new RegExp(`^## ${title}\\s*$`, "m"));
  if (start < 0) throw new Error(`${ARCHITECTURE} has no "## ${title}" section`);
  const rest = markdown.slice(start + 3);
  const end = rest.search(/^## /m);
  return end < 0 ? rest : rest.slice(0, end);
}

/** The file table: the first cell of each row, when it is one backticked `src/` path. */
function fileTableRows(): string[] {
  return [...section(architecture, "Files").matchAll(/^\|\s*`(src\/[^`]+)`\s*\|/gm)].map((m) => m[1]!);
}

interface Diagram {
  /** node id -> the folders (`queue/`) and root files (`store.ts`) its label names */
  nodes: Map<string, string[]>;
  /** `from -> to` for every drawn edge */
  edges: Set<string>;
}

/** Parses the first ```mermaid block of the "Layers" section (node declarations and `a & b --> c & d` edges). */
function layerDiagram(): Diagram {
  const block = /```mermaid\n([\s\S]*?)```/.exec(section(architecture, "Layers"));
  if (!block) throw new Error(`the "## Layers" section of ${ARCHITECTURE} has no mermaid block`);
  const nodes = new Map<string, string[]>();
  const edges = new Set<string>();
  for (const line of block[1]!.split("\n")) {
    const declared = /^\s*([A-Za-z_]\w*)\s*\["([^"]*)"\]\s*$/.exec(line);
    if (declared) {
      nodes.set(declared[1]!, declared[2]!.match(/[\w.-]+\/|[\w.-]+\.ts\b/g) ?? []);
      continue;
    }
    const edge = /^\s*([\w\s&]+?)\s*(?:-->|-\.->)\s*([\w\s&]+)$/.exec(line);
    if (!edge) continue;
    for (const from of edge[1]!.split("&"))
      for (const to of edge[2]!.split("&")) edges.add(`${from.trim()} -> ${to.trim()}`);
  }
  return { nodes, edges };
}

/** What a diagram label names a source file by: its folder under src/ (`queue/`), or itself at the root (`store.ts`). */
function labelName(file: string): string {
  const [first, ...rest] = file.slice("src/".length).split("/");
  return rest.length > 0 ? `${first}/` : first!;
}

/** The diagram node a source file belongs to: the one whose label names it. */
function nodeOf(diagram: Diagram, file: string): string | undefined {
  const name = labelName(file);
  for (const [id, names] of diagram.nodes) if (names.includes(name)) return id;
  return undefined;
}

/** The import graph as dependency-cruiser sees it with the cycle check's config: `from -> to` per module. */
function importGraph(): Array<{ from: string; to: string }> {
  const bin = join(ROOT, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs");
  const out = execFileSync(
    process.execPath,
    [bin, "src", "--config", ".dependency-cruiser.cjs", "--output-type", "json"],
    { cwd: ROOT, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 },
  );
  const result = JSON.parse(out) as {
    modules: Array<{ source: string; dependencies: Array<{ resolved: string }> }>;
  };
  return result.modules.flatMap((m) =>
    m.dependencies
      .filter((d) => m.source.startsWith("src/") && d.resolved.startsWith("src/"))
      .map((d) => ({ from: m.source, to: d.resolved })),
  );
}

describe("docs/architecture.md file table", () => {
  const files = sourceFiles();
  const rows = fileTableRows();

  it("has a row for every file in src/", () => {
    const listed = new Set(rows);
    const missing = files
      .filter((f) => !listed.has(f))
      .map((f) => `${f} is in src/ but has no row in the file table ("## Files") of ${ARCHITECTURE}`);
    expect(missing).toEqual([]);
  });

  it("names only files that exist, each once", () => {
    const gone = rows
      .filter((f) => !existsSync(join(ROOT, f)))
      .map((f) => `${f} has a row in the file table of ${ARCHITECTURE} but does not exist`);
    const twice = rows
      .filter((f, i) => rows.indexOf(f) !== i)
      .map((f) => `${f} has more than one row in the file table of ${ARCHITECTURE}`);
    expect([...gone, ...twice]).toEqual([]);
  });

  it("names only existing src/ paths anywhere in the docs and README", () => {
    const docs = [ARCHITECTURE, "docs/product.md", "README.md"].filter((d) => existsSync(join(ROOT, d)));
    const stale = docs.flatMap((doc) =>
      [...new Set(readFileSync(join(ROOT, doc), "utf8").match(/\bsrc\/[\w./-]+\.ts\b/g) ?? [])]
        .filter((path) => !existsSync(join(ROOT, path)))
        .map((path) => `${doc} names ${path}, which does not exist`),
    );
    expect(stale).toEqual([]);
  });
});

describe("docs/architecture.md layer diagram", () => {
  const diagram = layerDiagram();

  it("places every file of src/ in exactly one node", () => {
    const problems: string[] = [];
    for (const file of sourceFiles()) {
      const name = labelName(file);
      const holders = [...diagram.nodes].filter(([, names]) => names.includes(name)).map(([id]) => id);
      if (holders.length === 0)
        problems.push(`${file}: no node of the layer diagram names "${name}" in its label (add it to one)`);
      if (holders.length > 1) problems.push(`${file}: "${name}" is named by several nodes (${holders})`);
    }
    for (const [id, names] of diagram.nodes)
      for (const name of names)
        if (!existsSync(join(ROOT, "src", name)))
          problems.push(`node ${id} names "${name}", which is not in src/ (remove it from the label)`);
    expect(problems).toEqual([]);
  });

  it("draws every folder-level import edge dependency-cruiser reports, and no other", () => {
    const actual = new Map<string, string>(); // edge -> one import that makes it
    for (const { from, to } of importGraph()) {
      const a = nodeOf(diagram, from);
      const b = nodeOf(diagram, to);
      if (!a || !b || a === b) continue; // an unplaced file is reported by the test above
      if (!actual.has(`${a} -> ${b}`)) actual.set(`${a} -> ${b}`, `${from} imports ${to}`);
    }
    const undrawn = [...actual]
      .filter(([edge]) => !diagram.edges.has(edge))
      .map(([edge, why]) => `edge ${edge} is not drawn in the layer diagram (${why})`);
    const undeclared = [...diagram.edges].filter((edge) =>
      edge.split(" -> ").some((id) => !diagram.nodes.has(id)),
    );
    const unknown = undeclared.map((edge) => `drawn edge ${edge} names a node the diagram does not declare`);
    const stale = [...diagram.edges]
      .filter((edge) => !actual.has(edge) && !undeclared.includes(edge))
      .map(
        (edge) => `drawn edge ${edge} is not in the import graph (no module of the first imports the second)`,
      );
    expect([...undrawn, ...unknown, ...stale].sort()).toEqual([]);
  });
});

/**
 * A state diagram that says `%% checked against NAME in src/….ts` must draw
 * exactly the moves that module's NAME (a record: state -> the states it may
 * move to) declares; `[*]` (start and end) is not a state, and a move's label
 * (`pending --> running: claim`) is free text.
 */
describe("docs/architecture.md state diagrams", () => {
  const diagrams = [...architecture.matchAll(/```mermaid\n(stateDiagram[\s\S]*?)```/g)].map((m) => m[1]!);

  it("says what each state diagram is checked against", () => {
    const unchecked = diagrams
      .filter((d) => !/%% checked against \w+ in src\/\S+\.ts/.test(d))
      .map((d) => `a state diagram in ${ARCHITECTURE} names no table to check it against: ${d.slice(0, 80)}`);
    expect(unchecked).toEqual([]);
  });

  it("draws exactly the moves of the table it names", async () => {
    const problems: string[] = [];
    for (const d of diagrams) {
      const named = /%% checked against (\w+) in (src\/\S+\.ts)/.exec(d);
      if (!named) continue;
      const [, name, path] = named as unknown as [string, string, string];
      const mod = (await import(join(ROOT, path))) as Record<string, unknown>;
      const table = mod[name] as Record<string, readonly string[]> | undefined;
      if (!table) {
        problems.push(`${path} exports no ${name}`);
        continue;
      }
      const declared = new Set(
        Object.entries(table).flatMap(([from, tos]) => tos.map((to) => `${from} -> ${to}`)),
      );
      const drawn = new Set(
        [...d.matchAll(/^\s*(\w+)\s*-->\s*(\w+)\s*(?::.*)?$/gm)].map((m) => `${m[1]} -> ${m[2]}`),
      );
      for (const move of declared)
        if (!drawn.has(move))
          problems.push(`${name} (${path}) allows ${move}, which the diagram does not draw`);
      for (const move of drawn)
        if (!declared.has(move))
          problems.push(`the diagram for ${name} draws ${move}, which ${path} does not allow`);
    }
    expect(problems).toEqual([]);
  });
});

/** docs/product.md lists the public contracts as built: every metric and every HTTP route the code registers. */
describe("docs/product.md", () => {
  const product = readFileSync(join(ROOT, "docs/product.md"), "utf8");
  const code = sourceFiles().map((f) => ({ file: f, text: readFileSync(join(ROOT, f), "utf8") }));

  it("names every metric src/ registers", () => {
    const missing = code.flatMap(({ file, text }) =>
      [...text.matchAll(/\bname: "(tidewire_\w+)"/g)]
        .filter((m) => !product.includes(`\`${m[1]}\``))
        .map((m) => `metric ${m[1]} (${file}) is not in docs/product.md ("Metrics")`),
    );
    expect(missing).toEqual([]);
  });

  it("names every HTTP route src/ registers", () => {
    const missing = code.flatMap(({ file, text }) =>
      [
        ...[...text.matchAll(/\b(?:app|scope)\.(get|post|put|delete)\(\s*"(\/[^"]*)"/g)].map(
          (m) => `${m[1]!.toUpperCase()} ${m[2]}`,
        ),
        // the hub's protocol calls go through one helper that registers a POST
        ...[...text.matchAll(/\broute\(\s*"(\/v1\/[^"]*)"/g)].map((m) => `POST ${m[1]}`),
        // a WebSocket endpoint is an upgrade of a GET on its path
        ...[...text.matchAll(/\bpath: "(\/v1\/[^"]*)"/g)].map((m) => `GET ${m[1]}`),
      ]
        .filter((route) => !product.includes(route))
        .map((route) => `route ${route} (${file}) is not in docs/product.md ("HTTP")`),
    );
    expect(missing).toEqual([]);
  });
});

// Contract: `npm run lint` fails when any module under src/ reaches itself through
// its imports. Only cycles are checked: layering rules come later (issue 16).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment:
        "An import cycle ties modules that should be independent; move the shared part to a module both import.",
      from: {},
      to: { circular: true },
    },
    {
      // A cycle between folders (sync -> hub -> sync) blocks splitting them into
      // separate entry points even when no single module reaches itself.
      name: "no-circular-folders",
      severity: "error",
      comment:
        "Folders under src/ import each other in a cycle; depend on an interface or move the shared part down.",
      scope: "folder",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    // Type-only imports are cycles too: they couple the modules' designs.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};

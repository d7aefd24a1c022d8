// ComfyUMe validator `{{name}}`: accepts every non-empty graph.
//
// A starting point: replace `claims` with the test for your family of
// workflows (graphs that are not yours must get `not-applicable`, so another
// validator may claim them) and add your rules, reporting each problem at
// the node and input where the offending value lives.
//
// Variants are `{ tag, val }` objects; input values are e.g.
// `{ tag: "int", val: 1024n }` or `{ tag: "link", val: { node: "75:68", slot: 0 } }`.

function claims(graph) {
  return graph.length > 0;
}

export const validation = {
  validate(graph) {
    if (!claims(graph)) return { tag: "not-applicable" };
    const problems = [];
    // Example rule:
    // problems.push({ nodeId: node.id, inputName: "width", type: "value-not-valid",
    //                 message: "width 1000 is not a multiple of 16" });
    if (problems.length > 0) return { tag: "rejected", val: problems };
    // Zero cost means "unknown" to the scheduler and the selector.
    const cost = { frames: 0, width: 0, height: 0, steps: 0, gpuSeconds: 0 };
    return { tag: "accepted", val: { workflowKind: "{{name}}", cost } };
  },
};

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    kind: "validator",
    summary: "Accepts every non-empty workflow (a skeleton to start from).",
  };
}

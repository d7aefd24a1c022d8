"""ComfyUMe validator `{{name}}`: accepts every non-empty graph.

A starting point: replace `claims` with the test for your family of
workflows (graphs that are not yours must get `not-applicable`, so another
validator may claim them) and add your rules, reporting each problem at the
node and input where the offending value lives.
"""

from typing import List

import wit_world
from wit_world.exports import validation
from wit_world.imports import types


def claims(graph: List[validation.Node]) -> bool:
    return len(graph) > 0


class Validation(wit_world.exports.Validation):
    def validate(self, graph: List[validation.Node]) -> validation.Verdict:
        if not claims(graph):
            return validation.Verdict_NotApplicable()
        problems: List[validation.Problem] = []
        # Example rule:
        # problems.append(validation.Problem(node_id=node.id, input_name="width",
        #     type=validation.ProblemType.VALUE_NOT_VALID, message="width 1000 is not a multiple of 16"))
        if problems:
            return validation.Verdict_Rejected(problems)
        # Zero cost means "unknown" to the scheduler and the selector.
        cost = types.CostEstimate(frames=0, width=0, height=0, steps=0, gpu_seconds=0.0)
        return validation.Verdict_Accepted(validation.Accepted(workflow_kind="{{name}}", cost=cost))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            kind=types.PluginKind.VALIDATOR,
            summary="Accepts every non-empty workflow (a skeleton to start from).",
        )

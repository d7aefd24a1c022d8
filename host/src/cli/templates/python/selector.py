"""ComfyUMe backend selector `{{name}}`: the first healthy pool with room.

Answer the index of a pool that is healthy and has `in_flight < capacity`,
or raise `Err(reason)`: the job then waits and the reason is shown.
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.exports import selection
from wit_world.imports import types


class Selection(wit_world.exports.Selection):
    def select(self, job: selection.JobInfo, backends: List[selection.Backend]) -> int:
        for index, pool in enumerate(backends):
            if pool.healthy and pool.in_flight < pool.capacity:
                return index
        raise Err(f"no healthy pool has room for job {job.id}; it waits")


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            kind=types.PluginKind.SELECTOR,
            summary="The first healthy pool with room.",
        )

"""ComfyUMe scheduler `{{name}}`: first in, first out.

The oldest pending job (submit time, then id) whose user is below their
running cap runs next; none when every waiting user is at their cap.
The host passes the whole queue on every call: keep no state between calls.
"""

from typing import Optional

import wit_world
from wit_world.exports import scheduling
from wit_world.imports import types


def has_room(snapshot: scheduling.Snapshot, user: int) -> bool:
    """The user is known and below their running cap (no cap: always room)."""
    if user >= len(snapshot.users):
        return False
    usage = snapshot.users[user]
    return usage.max_running is None or usage.running < usage.max_running


class Scheduling(wit_world.exports.Scheduling):
    def pick_next(self, snapshot: scheduling.Snapshot) -> Optional[int]:
        best = None
        for index, job in enumerate(snapshot.pending):
            if not has_room(snapshot, job.user):
                continue
            key = (job.submitted_at_ms, job.id)
            if best is None or key < best[0]:
                best = (key, index)
        return None if best is None else best[1]


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            kind=types.PluginKind.SCHEDULER,
            summary="Oldest pending job first, skipping users at their running cap.",
        )

"""ComfyUMe scheduler `python-fair-share`: the user who has used the least GPU time goes next.

The same policy as the Rust built-in `fair-share` (plugins/scheduler-fair-share):

- a user's share is the GPU-seconds their finished jobs used this session plus
  the estimated GPU-seconds of their jobs running now;
- instructor-class jobs go first (the live-demo lane);
- ties go to the oldest job (submit time, then id);
- a job whose user is at their running cap, or whose user index is unknown,
  is skipped.

Built with componentize-py against the repository's WIT (world `scheduler`).
"""

import math
from typing import Optional

import wit_world
from wit_world.exports import scheduling
from wit_world.imports import types


def _sanitize(seconds: float) -> float:
    """Negative, NaN or infinite usage from a confused host counts as zero."""
    if math.isfinite(seconds) and seconds > 0.0:
        return seconds
    return 0.0


def _has_room(users, user: int) -> bool:
    """The user is known and below their running cap (no cap: always room)."""
    if user >= len(users):
        return False
    usage = users[user]
    return usage.max_running is None or usage.running < usage.max_running


def pick_next(snapshot: scheduling.Snapshot) -> Optional[int]:
    users = snapshot.users
    share = [_sanitize(u.gpu_seconds_used) for u in users]
    for job in snapshot.running:
        if job.user < len(share):
            share[job.user] += _sanitize(job.est_gpu_seconds)
    best_key = None
    best = None
    for index, job in enumerate(snapshot.pending):
        if not _has_room(users, job.user):
            continue
        lane = 0 if job.priority == types.PriorityClass.INSTRUCTOR else 1
        key = (lane, share[job.user], job.submitted_at_ms, job.id)
        if best_key is None or key < best_key:
            best_key = key
            best = index
    return best


class Scheduling(wit_world.exports.Scheduling):
    def pick_next(self, snapshot: scheduling.Snapshot) -> Optional[int]:
        return pick_next(snapshot)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="python-fair-share",
            version="0.1.0",
            kind=types.PluginKind.SCHEDULER,
            summary="Least GPU-seconds used this session first; instructor lane first (Python).",
        )

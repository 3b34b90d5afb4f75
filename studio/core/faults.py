"""Named kill points, so tests can SIGKILL a process at an exact place in its work.

`STUDIO_KILL_AT="save:written:3"` makes the process kill itself (SIGKILL: no clean-up, no
`finally`, as a power cut or the OOM killer would) the third time it reaches `point("save:written")`.
Points are counted, not timed, so a fast or slow machine dies at the same place. Several points
may be given, separated by commas; the first one to reach its count fires. Unset (always, outside
tests), `point()` costs one dictionary lookup.

The points the studio has (in the order a queue job passes them):
- `job:claimed` — a runner took a job (its row says running, nothing generated yet);
- `job:generated` — the engine finished, nothing saved yet;
- `save:pending` — an image's pending row is committed, its file not yet written;
- `save:written` — the file is in place, the row still pending;
- `save:landed` — the image's row is `ok` (and its job updated) in the same commit;
- `job:done` — a job's last image landed.
"""

from __future__ import annotations

import os
import signal

ENV = "STUDIO_KILL_AT"


def _parse(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.rpartition(":")
        try:
            out[name] = max(1, int(count))
        except ValueError:
            out[part] = 1
    return out


_targets: dict[str, int] = _parse(os.environ.get(ENV, ""))
_seen: dict[str, int] = {}


def reload() -> None:
    """Read STUDIO_KILL_AT again (for tests that set it in-process)."""
    global _targets
    _targets = _parse(os.environ.get(ENV, ""))
    _seen.clear()


def point(name: str) -> None:
    """Count a pass through `name`; SIGKILL this process when its count is reached."""
    if not _targets or name not in _targets:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= _targets[name]:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

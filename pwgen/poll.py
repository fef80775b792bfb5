"""Poll a condition until it holds or a deadline passes: the one wait loop of pwgen.

Everything pwgen waits for (a process to die, a master to answer, a node to be idle,
a forward to be accepted again) is checked by calling a function, never by sleeping
blindly for the worst case.
"""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    check: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.05,
    backoff: float = 1.0,
    max_interval: float = 0.2,
) -> T | None:
    """Call `check` until it returns something other than None or False; return that.

    Returns None when `timeout` seconds pass first. `check` always runs at least once,
    and once more at the deadline, so a zero timeout is a single look. The pause
    between calls starts at `interval` and grows by `backoff` up to `max_interval`
    (most things pwgen waits for are ready in milliseconds; some take seconds).
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(delay, left))
        delay = min(delay * backoff, max(max_interval, interval))

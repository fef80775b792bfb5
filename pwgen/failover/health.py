"""Site health: a site is avoided after K consecutive site-level failures, for a cool-down.

A success (or an application error, which proves the site ran the task) resets the
count. After the cool-down the site is admitted again; if it fails again it is
avoided again at once (its count was kept). A site pwgen gave up on for good (queue
wait over budget, unreachable at start) is `abandoned` and never re-admitted.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pwgen.failover.defaults import AVOID_AFTER, COOL_DOWN


@dataclass
class SiteHealth:
    """Thread-safe per-site failure counts, avoidance windows and abandoned sites."""

    threshold: int = AVOID_AFTER
    cool_down: float = COOL_DOWN
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _avoided_until: dict[str, float] = field(default_factory=dict)
    _abandoned: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {self.threshold}")
        if self.cool_down < 0:
            raise ValueError(f"cool_down must not be negative, not {self.cool_down}")

    def failed(self, site: str) -> bool:
        """Count a site-level failure; True when this one made the site avoided."""
        with self._lock:
            count = self._failures.get(site, 0) + 1
            self._failures[site] = count
            if count < self.threshold or self._avoided_locked(site):
                return False
            self._avoided_until[site] = self.clock() + self.cool_down
            return True

    def succeeded(self, site: str) -> None:
        with self._lock:
            self._failures[site] = 0
            self._avoided_until.pop(site, None)

    def abandon(self, site: str, reason: str) -> None:
        with self._lock:
            self._abandoned.setdefault(site, reason)

    def healthy(self, site: str) -> bool:
        with self._lock:
            return site not in self._abandoned and not self._avoided_locked(site)

    def abandoned(self) -> dict[str, str]:
        with self._lock:
            return dict(self._abandoned)

    def _avoided_locked(self, site: str) -> bool:
        until = self._avoided_until.get(site)
        return until is not None and self.clock() < until

"""`Failover`: pwgen's retry_handler, which moves tasks off failing sites.

Parsl picks an app's executor once, at submit time, and retries go back to it. Parsl
calls `Config.retry_handler(error, task_record)` after each failed try and adds the
returned cost to the task's `fail_cost`; the task is retried while that stays within
`Config.retries`. Setting `task_record["executor"]` before returning moves the retry
(the documented hook). So:

- an application error costs 1 and is retried in place (the user's `retries`);
- a site-level failure (pwgen.failover.errors) is charged to the site, not the task:
  the task moves, free, to another available site among those its app allows, or
  is retried in place when there is none (up to `site_retries` free tries, then it
  costs 1 like any other retry); with nowhere at all to go it fails.

Which sites an app allows is the `executors=` list it was declared with (all sites
for 'all'): an app pinned to one site is retried there only. The DFK does not keep
that list, so `pwgen.failover.dispatch` records it at submit time. A task whose
`file://` Files pwgen staged to its site stays there too (pwgen.staging copied its
data to that site only).
"""

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from parsl.data_provider.files import File
from parsl.executors import MPIExecutor

from pwgen.executors.flux import SiteFluxExecutor
from pwgen.failover.defaults import AVOID_AFTER, COOL_DOWN, SITE_RETRIES
from pwgen.failover.errors import is_site_failure
from pwgen.failover.health import SiteHealth
from pwgen.failover.unavailable import UnavailableExecutor
from pwgen.parsl_internals import INTERNAL_EXECUTOR
from pwgen.staging.site import SITE_COPIED_SCHEMES

logger = logging.getLogger(__name__)

#: Moves listed one by one in the run manifest (all are counted).
MAX_LISTED_MOVES = 200
#: Task durations kept per site (for the in-flight guard's grace period).
DURATIONS_KEPT = 500


@dataclass(frozen=True)
class Move:
    """One task moved from a failing site to another."""

    at: float
    task: int
    app: str
    source: str
    target: str
    error: str


class Failover:
    """A Parsl `retry_handler` that moves tasks away from failing sites.

    enabled
        False: Parsl's own behaviour (every failure costs 1, retried in place); site
        health is still tracked and reported.
    threshold, cool_down
        A site is avoided after `threshold` consecutive site-level failures, for
        `cool_down` seconds (pwgen.failover.health).
    site_retries
        Site-level failures of one task that cost nothing; later ones cost 1.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        threshold: int = AVOID_AFTER,
        cool_down: float = COOL_DOWN,
        site_retries: int = SITE_RETRIES,
    ) -> None:
        if site_retries < 0:
            raise ValueError(f"site_retries must not be negative, not {site_retries}")
        self.enabled = enabled
        self.health = SiteHealth(threshold=threshold, cool_down=cool_down)
        self.site_retries = site_retries
        self._lock = threading.Lock()
        self._allowed: dict[int, tuple[str, ...]] = {}
        self._submitting = threading.local()  # allowed sites of a submit still in progress
        self._site_failures: Counter[int] = Counter()
        self._moves: list[Move] = []
        self._move_count = 0
        self._routes: Counter[str] = Counter()
        self._failures_by_site: Counter[str] = Counter()
        self._completed_by_site: Counter[str] = Counter()
        self._durations: dict[str, deque[float]] = {}
        self._presumed_lost = 0
        self._turn = 0

    # --- Parsl's hook -----------------------------------------------------------------

    def __call__(self, error: Exception, task_record: Any) -> float:
        """Parsl's retry_handler: the cost of this failure; may move the task."""
        source: str = task_record["executor"]
        task_id: int = task_record["id"]
        executor = task_record["dfk"].executors.get(source)
        # A bad-state executor raises its stored exception, of any type, for new tries.
        refused = error is getattr(executor, "executor_exception", None)
        if not (is_site_failure(error) or refused):
            self.health.succeeded(source)  # the site ran the task; the app failed
            return 1.0
        self._note_site_failure(source, error)
        if not self.enabled:
            return 1.0
        with self._lock:
            self._site_failures[task_id] += 1
            free = self._site_failures[task_id] <= self.site_retries
        allowed = self.allowed(task_id, source)
        if has_site_staged_files(task_record, executor):
            allowed = (source,)  # its file:// or zip: data was copied to this site only
        target = self.choose(task_record["dfk"], allowed, source, plain=is_plain(task_record))
        if target is None:
            logger.error("task %d: no site left to run it on after: %r", task_id, error)
            return math.inf
        if target != source:
            task_record["executor"] = target
            self._note_move(task_record, source, target, error)
        return 0.0 if free else 1.0

    # --- what the dispatcher and the watcher tell it ----------------------------------

    def allowed(self, task_id: int, current: str) -> tuple[str, ...]:
        with self._lock:
            recorded = self._allowed.get(task_id)
        if recorded is None:  # failed inside its own submit call, before it was recorded
            recorded = getattr(self._submitting, "allowed", None)
        return recorded or (current,)

    @contextmanager
    def submitting(self, allowed: Sequence[str]) -> Iterator[None]:
        """While a submit runs: a failure inside it finds its allowed sites here."""
        self._submitting.allowed = tuple(allowed)
        try:
            yield
        finally:
            self._submitting.allowed = None

    def record_allowed(self, task_id: int, allowed: Sequence[str]) -> None:
        with self._lock:
            self._allowed[task_id] = tuple(allowed)

    def task_done(self, task_record: Any, succeeded: bool) -> None:
        """A task reached its final state: forget it; a success proves its site works."""
        site: str = task_record["executor"]
        with self._lock:
            self._allowed.pop(task_record["id"], None)
            self._site_failures.pop(task_record["id"], None)
            if succeeded:
                self._completed_by_site[site] += 1
                started, ended = (
                    task_record.get("try_time_launched"),
                    task_record.get("try_time_returned"),
                )
                if started is not None and ended is not None:
                    durations = self._durations.setdefault(site, deque(maxlen=DURATIONS_KEPT))
                    durations.append((ended - started).total_seconds())
        if succeeded:
            self.health.succeeded(site)

    def note_presumed_lost(self, count: int) -> None:
        with self._lock:
            self._presumed_lost += count

    def duration_quantile(self, site: str, quantile: float) -> float | None:
        """A quantile of the site's recent task durations (seconds), None before any."""
        with self._lock:
            durations = sorted(self._durations.get(site, ()))
        if not durations:
            return None
        return durations[min(len(durations) - 1, int(quantile * len(durations)))]

    # --- choosing a site ----------------------------------------------------------------

    def available(self, dfk: Any, label: str) -> bool:
        """The site exists, is not in bad state, and is neither avoided nor abandoned."""
        executor = dfk.executors.get(label)
        return (
            executor is not None
            and label != INTERNAL_EXECUTOR  # Parsl's own pool (joins etc.): never a target
            and not getattr(executor, "bad_state_is_set", False)
            and self.health.healthy(label)
        )

    def choose(
        self, dfk: Any, allowed: Sequence[str], source: str, *, plain: bool = False
    ) -> str | None:
        """Another available allowed site that can run the task (in turn), else the
        source. `plain`: the task asks for no resources (HTEX and Flux sites both run it)."""
        others = [
            label for label in self.candidates(dfk, allowed, source, plain) if label != source
        ]
        if others:
            with self._lock:
                self._turn += 1
                return others[self._turn % len(others)]
        return source if self.available(dfk, source) else None

    def candidates(self, dfk: Any, allowed: Sequence[str], source: str, plain: bool) -> list[str]:
        """The available allowed sites that can run a task now on `source` (itself included
        when available): see `choose`; also where pwgen.placement places first tries."""
        kind = _kind(dfk.executors.get(source))
        return [
            label
            for label in allowed
            if self.available(dfk, label) and _can_take(kind, _kind(dfk.executors[label]), plain)
        ]

    # --- the record -------------------------------------------------------------------

    @property
    def moves(self) -> int:
        """Tasks moved so far (read every second by `pwgen run`'s progress)."""
        with self._lock:
            return self._move_count

    def report(self) -> dict[str, Any]:
        """What failover did, for the run manifest."""
        with self._lock:
            return {
                "enabled": self.enabled,
                "moves": self._move_count,
                "routes": dict(self._routes),
                "site_failures": dict(self._failures_by_site),
                "completed": dict(self._completed_by_site),
                "presumed_lost": self._presumed_lost,
                "abandoned": self.health.abandoned(),
                "events": [asdict(move) for move in self._moves],
            }

    def _note_site_failure(self, site: str, error: Exception) -> None:
        with self._lock:
            self._failures_by_site[site] += 1
        if self.health.failed(site):
            logger.warning(
                "site %s: %d site-level failures in a row (last: %s); avoided for %.0f s",
                site,
                self.health.threshold,
                type(error).__name__,
                self.health.cool_down,
            )

    def _note_move(self, task_record: Any, source: str, target: str, error: Exception) -> None:
        move = Move(
            at=time.time(),
            task=task_record["id"],
            app=task_record.get("func_name", "?"),
            source=source,
            target=target,
            error=f"{type(error).__name__}: {error}"[:300],
        )
        with self._lock:
            self._move_count += 1
            self._routes[f"{source}->{target}"] += 1
            if len(self._moves) < MAX_LISTED_MOVES:
                self._moves.append(move)
        logger.warning(
            "task %d (%s) moved %s -> %s after %s", move.task, move.app, source, target, move.error
        )


def _kind(executor: Any) -> str | None:
    """ "mpi", "flux" or "htex": each reads its own resource keys (an MPI app's ranks
    mean nothing to a plain HTEX, a Flux job's nothing to an MPIExecutor). None for a
    site that never started."""
    if executor is None or isinstance(executor, UnavailableExecutor):
        return None
    if isinstance(executor, MPIExecutor):
        return "mpi"
    return "flux" if isinstance(executor, SiteFluxExecutor) else "htex"


def _can_take(source_kind: str | None, target_kind: str | None, plain: bool) -> bool:
    """Whether a task from a site of `source_kind` can run on one of `target_kind`: the
    same kind, or a task without resource keys between HTEX and Flux sites (both run it
    in their pool). A site that never started sends its tasks anywhere."""
    if source_kind is None or source_kind == target_kind:
        return True
    return plain and {source_kind, target_kind} == {"htex", "flux"}


def is_plain(task_record: Any) -> bool:
    """The task asks for no resources (no keys but HTEX's priority)."""
    return not set(task_record.get("resource_specification") or {}) - {"priority"}


def has_site_staged_files(task_record: Any, executor: Any) -> bool:
    """Does the task use `file://` or `zip:` Files that pwgen stages to (and from) this site?"""
    if getattr(executor, "remote_run_dir", None) is None:  # not a pwgen site executor
        return False
    kwargs = task_record.get("kwargs", {})
    candidates = [*task_record.get("args", ()), *kwargs.values()]
    candidates += [*kwargs.get("inputs", ()), *kwargs.get("outputs", ())]
    return any(isinstance(item, File) and item.scheme in SITE_COPIED_SCHEMES for item in candidates)

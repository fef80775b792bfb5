"""Capacity-aware placement: a task that may run on several sites goes where there is room.

Parsl picks an executor at random among an app's `executors=[...]` when the app is
called, so a small or slow site gets as many tasks as a big one and sets the makespan.
Under `pwgen run --placement capacity` (the default), a task's first try is placed when
it is launched (its dependencies done), on the allowed site with the most room now:

- room: a site takes up to ROOM_PER_WORKER tasks per connected worker (one running, one
  waiting in its interchange so that the worker never idles), and one task while it has
  no worker yet, so that its first block is requested as Parsl would;
- among the sites with room: the most idle workers, then the fewest tasks per worker,
  then the shortest recent task time.

When no allowed site has room, the task waits here (its state stays `pending`) and is
placed as soon as a task finishes or a worker connects (checked every second). What
Parsl cannot move: a task already sent to a site's interchange stays there (HTEX has no
way to take it back), which is why a site is given at most ROOM_PER_WORKER per worker.

A task with a `walltime` only goes to a site whose blocks all have that long left, plus
WALLTIME_MARGIN (a block's age counts from its first connected worker; its end is its
provider's walltime); blocks drain before their end (the generated `drain_period`).

Not placed here, launched where they were going: retries (failover chose their site),
apps allowed on one site only, tasks with `file://` or `zip:` Files (their data is
staged for the site chosen at the call), and tasks on executors without workers to
count (e.g. a ThreadPoolExecutor). The manifest counts tasks per site and reason.
"""

import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pwgen.configgen.batch import walltime_seconds
from pwgen.failover.policy import Failover, has_site_staged_files, is_plain
from pwgen.parsl_internals import INTERNAL_EXECUTOR, replace_launch_task

logger = logging.getLogger(__name__)

#: Tasks a site holds per connected worker: one running, one waiting in its interchange.
ROOM_PER_WORKER = 2
#: Seconds between two counts of each site's connected workers.
REFRESH_INTERVAL = 1.0
#: Seconds a block must have left beyond a task's walltime for the task to go there.
WALLTIME_MARGIN = 60.0

Launch = Callable[[Any], Future[Any]]


@dataclass
class SiteLoad:
    """What placement knows of one site."""

    workers: int | None = 0  # connected (None: cannot be counted, never held back)
    in_flight: int = 0  # tasks placed there and not finished
    walltime: float | None = None  # of its blocks, seconds
    blocks: dict[str, float] = field(default_factory=dict)  # block id: first seen (monotonic)

    def fits(self, task_walltime: float, now: float) -> bool:
        """Every block of the site (a new one if none) outlives the task by the margin."""
        if self.walltime is None:
            return True
        need = task_walltime + WALLTIME_MARGIN
        if not self.blocks:
            return need <= self.walltime
        return all(seen + self.walltime - now >= need for seen in self.blocks.values())

    def room(self) -> bool:
        if self.workers is None:
            return True
        return self.in_flight < max(ROOM_PER_WORKER * self.workers, 1)

    def idle(self) -> int:
        return (self.workers or 0) - self.in_flight

    def per_worker(self) -> float:
        return self.in_flight / self.workers if self.workers else float(self.in_flight)


class Placement:
    """Places the first try of every multi-site task of `dfk` (see the module doc)."""

    def __init__(self, dfk: Any, failover: Failover) -> None:
        self.dfk = dfk
        self.failover = failover
        self._lock = threading.Condition()
        self._loads: dict[str, SiteLoad] = {}
        self._held: dict[tuple[str, ...], deque[tuple[Any, Future[Any]]]] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._walltime_kept = 0  # tasks kept off a site whose blocks end too soon
        self._placed_elsewhere: dict[int, str] = {}  # task id -> site, when not Parsl's pick
        self._launch: Launch | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self) -> None:
        """Route the DFK's task launches through placement; start the refresh thread."""
        replace_launch_task(self.dfk, self._wrap)
        self._thread = threading.Thread(target=self._run, name="pwgen-placement", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def report(self) -> dict[str, Any]:
        """Tasks per site and reason, for the manifest."""
        with self._lock:
            sites: dict[str, dict[str, int]] = {}
            for (site, reason), count in sorted(self._counts.items()):
                sites.setdefault(site, {})[reason] = count
            held = sum(len(queue) for queue in self._held.values())
        return {
            "mode": "capacity",
            "sites": sites,
            "waiting": held,
            "kept_from_ending_blocks": self._walltime_kept,
        }

    def correct_monitoring(self, endpoint: str | None, run_id: str) -> None:
        """Parsl's monitoring database keeps the executor a task's first try was given when
        the app was called; once the run is over, write the site placement chose there
        (`endpoint`: the monitoring hub's `sqlite:///<path>`; anything else is left)."""
        if not endpoint or not endpoint.startswith("sqlite:///") or not self._placed_elsewhere:
            return
        rows = [(site, run_id, task) for task, site in self._placed_elsewhere.items()]
        try:
            with sqlite3.connect(endpoint.removeprefix("sqlite:///"), timeout=30) as db:
                db.executemany(
                    "UPDATE try SET task_executor = ? WHERE run_id = ? AND task_id = ? "
                    "AND try_id = 0",
                    rows,
                )
        except sqlite3.Error as err:  # the run's results stand; its picture is off
            logger.warning("monitoring database: first tries' sites not corrected: %s", err)

    # --- the launch hook ------------------------------------------------------------

    def _wrap(self, launch: Launch) -> Launch:
        self._launch = launch

        def launch_with_placement(task_record: Any) -> Future[Any]:
            candidates = self._candidates(task_record)
            if candidates is None:
                return self._launched(task_record, task_record["executor"], "fixed")
            with self._lock:
                site = self._best(candidates)
                if site is not None:
                    self._loads[site].in_flight += 1
            if site is not None:
                return self._launched(task_record, site, self._reason(site), counted=True)
            if self._stored(task_record):  # a stored result stands in: no room needed
                return self._launched(task_record, task_record["executor"], "stored result")
            held: Future[Any] = Future()
            with self._lock:
                self._held.setdefault(candidates, deque()).append((task_record, held))
                self._lock.notify_all()  # room may have appeared meanwhile
            return held

        return launch_with_placement

    def _candidates(self, task_record: Any) -> tuple[str, ...] | None:
        """The sites placement chooses among for this try, None when it is not placed here."""
        source = task_record["executor"]
        if task_record.get("fail_count", 0) or source == INTERNAL_EXECUTOR:
            return None
        allowed = self.failover.allowed(task_record["id"], source)
        executor = self.dfk.executors.get(source)
        if len(allowed) < 2 or has_site_staged_files(task_record, executor):
            return None
        found = self.failover.candidates(self.dfk, allowed, source, plain=is_plain(task_record))
        if len(found) < 2:
            return None
        walltime = (task_record.get("kwargs") or {}).get("walltime")
        return tuple(self._outliving(found, float(walltime)) if walltime else found)

    def _outliving(self, sites: list[str], walltime: float) -> list[str]:
        """The sites whose blocks outlive a task of `walltime` (all of them when none does:
        the task then goes where Parsl would have sent it)."""
        now = time.monotonic()
        with self._lock:
            fitting = [
                s for s in sites if self._loads.setdefault(s, SiteLoad()).fits(walltime, now)
            ]
            if fitting and len(fitting) < len(sites):
                self._walltime_kept += 1
        return fitting or sites

    def _stored(self, task_record: Any) -> bool:
        """Whether the DFK's memoizer has a result for the task (a resumed run's, or an
        app's cache): it is not held back for room it will not use."""
        memoizer = getattr(self.dfk, "memoizer", None)
        return memoizer is not None and memoizer.check_memo(task_record) is not None

    def _best(self, candidates: tuple[str, ...]) -> str | None:
        """The candidate with the most room now (lock held); None when none has room."""
        loads = [(site, self._loads.setdefault(site, SiteLoad())) for site in candidates]
        open_sites = [(site, load) for site, load in loads if load.room()]
        if not open_sites:
            return None
        return min(
            open_sites,
            key=lambda item: (
                -item[1].idle(),
                item[1].per_worker(),
                self.failover.duration_quantile(item[0], 0.5) or 0.0,
            ),
        )[0]

    def _reason(self, site: str) -> str:
        load = self._loads[site]
        if load.workers is None:
            return "uncounted"
        if not load.workers:
            return "no worker yet"
        return "idle worker" if load.in_flight <= load.workers else "queued"

    def _launched(
        self, task_record: Any, site: str, reason: str, counted: bool = False
    ) -> Future[Any]:
        """Launch the try on `site` with Parsl's own launch; count it and its end."""
        assert self._launch is not None
        if site != task_record["executor"]:
            with self._lock:
                self._placed_elsewhere[task_record["id"]] = site
        task_record["executor"] = site
        with self._lock:
            self._counts[(site, reason)] += 1
        try:
            future = self._launch(task_record)
        except BaseException:
            if counted:
                self._finished(site)
            raise
        if counted:
            future.add_done_callback(lambda _: self._finished(site))
        return future

    def _finished(self, site: str) -> None:
        with self._lock:
            self._loads[site].in_flight -= 1
            self._lock.notify_all()

    # --- held tasks -------------------------------------------------------------------

    def _run(self) -> None:
        """Place held tasks when room appears; count workers every REFRESH_INTERVAL."""
        next_refresh = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_refresh:
                self._refresh_workers()
                next_refresh = time.monotonic() + REFRESH_INTERVAL
            for task_record, held, site in self._placeable():
                self._chain(held, task_record, site)
            with self._lock:
                self._lock.wait(timeout=max(0.0, next_refresh - time.monotonic()))

    def _placeable(self) -> list[tuple[Any, Future[Any], str]]:
        """Held tasks that now have a site (taken off the queue, their site reserved). A
        group whose every site became unavailable goes where Parsl sent it (failover
        takes it from there)."""
        placed = []
        with self._lock:
            for candidates, queue in self._held.items():
                usable = tuple(s for s in candidates if self.failover.available(self.dfk, s))
                while queue:
                    site = self._best(usable) if usable else None
                    if site is None and usable:
                        break
                    task_record, held = queue.popleft()
                    site = site or task_record["executor"]
                    self._loads.setdefault(site, SiteLoad()).in_flight += 1
                    placed.append((task_record, held, site))
        return placed

    def _chain(self, held: Future[Any], task_record: Any, site: str) -> None:
        """Launch a held task; the future the DFK holds completes with the real one."""
        try:
            future = self._launched(task_record, site, self._reason(site), counted=True)
        except Exception as err:  # as Parsl: a failed launch is the try's failure
            held.set_exception(err)
            return
        future.add_done_callback(lambda done: _copy_outcome(done, held))

    def _refresh_workers(self) -> None:
        now = time.monotonic()
        for label, executor in list(self.dfk.executors.items()):
            if label == INTERNAL_EXECUTOR:
                continue
            managers = _active_managers(executor)
            with self._lock:
                load = self._loads.setdefault(label, SiteLoad())
                load.walltime = _walltime(executor)
                if managers is None:
                    load.workers = None
                else:
                    load.workers = sum(int(m.get("worker_count", 0)) for m in managers)
                    blocks = {str(m.get("block_id")) for m in managers}
                    load.blocks = {b: load.blocks.get(b, now) for b in blocks}
                self._lock.notify_all()


def _active_managers(executor: Any) -> list[dict[str, Any]] | None:
    """The site's active managers; None for an executor that has none to count."""
    managers = getattr(executor, "connected_managers", None)
    if managers is None:
        return None
    if getattr(executor, "bad_state_is_set", False):
        return []
    try:
        connected: list[dict[str, Any]] = managers()
    except Exception as err:  # the interchange may not answer now; next second it may
        logger.debug("%s: counting workers failed: %s", executor.label, err)
        return []
    return [m for m in connected if m.get("active", True)]


def _walltime(executor: Any) -> float | None:
    """Seconds of the site's block walltime, None when its provider has none."""
    walltime = getattr(getattr(executor, "provider", None), "walltime", None)
    try:
        return float(walltime_seconds(walltime)) if isinstance(walltime, str) else None
    except ValueError:
        return None


def _copy_outcome(done: Future[Any], held: Future[Any]) -> None:
    if done.cancelled():
        held.cancel()
    elif done.exception() is not None:
        held.set_exception(done.exception())
    else:
        held.set_result(done.result())

"""`SiteWatch`: a background look at every site once a second, for two things Parsl misses.

Queue-wait budget. Parsl's `walltime` counts from the start of execution, so a task
can wait for ever in a site's queue. When a site has tasks but no worker connected
for longer than `queue_wait` seconds (its blocks pending, or failing to start), the
site is abandoned for this run: its executor is put in bad state, which fails its
waiting tasks with `QueueWaitExceeded` (and `Failover` moves them), and its blocks
are cancelled. It is not re-admitted: its interchange still holds those tasks and
Parsl cannot take them back.

Site lost. When every worker of a site vanishes at once with work outstanding (its
nodes or pools killed), the connections to its worker port close here within a round
trip, long before the interchange's heartbeat threshold: once that is confirmed
(pwgen.failover.loss) the site is given up on like one over its queue-wait budget,
its tasks failing with `SiteLost`.

Tasks lost in flight. When a site's tunnel breaks (pwgen.tunnels repairs it within
seconds and the workers reconnect), a task message or result that was inside the
broken connection is gone, and Parsl would wait for it for ever. After a repair, the
tasks outstanding on that site are suspects. Once the grace period has passed (3x the
site's 95th-percentile task duration, at least `min_grace`), a suspect is presumed
lost when a task submitted after it has finished since the repair (the interchange
dispatches in order, so it got past the suspect), or when the site has returned
nothing for a whole grace period while the suspects are outstanding (their results
went down with the tunnel, and the interchange counts the workers that ran them busy
for ever). The second rule needs evidence that the suspects are not just long tasks:
newer tasks waiting behind them, or task durations seen on the site before. A
presumed-lost suspect fails with `PresumedLost` and is retried; a late result of the
first try is dropped.
"""

import logging
import os
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from pwgen.executors.blocks import cancel_active_blocks
from pwgen.failover.errors import PresumedLost, QueueWaitExceeded, SiteFailure, SiteLost
from pwgen.failover.loss import LossDetector
from pwgen.failover.policy import Failover
from pwgen.parsl_internals import INTERNAL_EXECUTOR, replace_task_future
from pwgen.tunnels.links import established_to_loopback

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
#: Seconds between checks while a site lists managers whose connections were not counted.
CLOSE_INTERVAL = 0.2
#: Set to 0: no site-loss detection (lost sites wait for the heartbeat threshold, as
#: before it; benchmarks compare the two).
LOSS_DETECTION_ENV = "PWGEN_SITE_LOSS_DETECTION"
#: HTEX priority of plain tasks moved off a site given up on: the target's interchange
#: dispatches them ahead of its own queue (tasks without a priority come last); they
#: have waited longest.
MOVED_PRIORITY = 0
MIN_GRACE = 10.0


@dataclass
class _InFlight:
    """One site's in-flight guard state."""

    repairs_seen: int
    suspects: set[int] = field(default_factory=set)
    repaired_at: float = 0.0
    newest_finished: int = -1
    last_result_at: float = 0.0
    last_seen: set[int] = field(default_factory=set)


class SiteWatch:
    """Site loss, queue-wait budget and in-flight guard for every executor of `dfk`.

    queue_wait
        Seconds a site may have tasks and no connected worker; None: no budget.
    loss
        Decides when a site whose workers' connections all closed is lost.
    """

    def __init__(
        self,
        failover: Failover,
        dfk: Any,
        *,
        queue_wait: float | None,
        interval: float = CHECK_INTERVAL,
        min_grace: float = MIN_GRACE,
        loss: LossDetector | None = None,
    ) -> None:
        if queue_wait is not None and queue_wait <= 0:
            raise ValueError(f"queue_wait must be positive, not {queue_wait}")
        self.failover = failover
        self.dfk = dfk
        self.queue_wait = queue_wait
        self.interval = interval
        self.min_grace = min_grace
        self._stalled_since: dict[str, float] = {}
        self._in_flight: dict[str, _InFlight] = {}
        self.loss = loss or LossDetector()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pwgen-site-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def check_once(self, now: float) -> None:
        sites = [
            (label, executor)
            for label, executor in list(self.dfk.executors.items())
            if label != INTERNAL_EXECUTOR and not getattr(executor, "bad_state_is_set", True)
        ]
        links = established_to_loopback(filter(None, (_worker_port(e) for _, e in sites)))
        for label, executor in sites:
            try:
                self._check_site(label, executor, links, now)
            except Exception as err:  # a site that does not answer now may next time
                logger.warning("site %s: watch check failed: %s", label, err)

    def _check_site(self, label: str, executor: Any, links: Any, now: float) -> None:
        active = _active_managers(executor) if executor.tasks else 0
        port = _worker_port(executor)
        if port is not None and os.environ.get(LOSS_DETECTION_ENV) != "0":
            lost = self.loss.check(
                label, executor.tunnel, None if links is None else links[port], active, now
            )
            if lost:
                self._give_up(label, executor, SiteLost(label, lost), "lost")
                return
        if self.queue_wait is not None:
            self._check_queue_wait(label, executor, active, now)
        self._check_in_flight(label, executor, now)

    def _run(self) -> None:
        while not self._stop.wait(self._next_check()):
            self.check_once(time.monotonic())

    def _next_check(self) -> float:
        """Seconds to the next check: CLOSE_INTERVAL while a site's new workers have not
        been counted yet (the loss detector cannot tell their loss before), else `interval`."""
        if self.loss.watching_closely(time.monotonic()):
            return min(self.interval, CLOSE_INTERVAL)
        return self.interval

    # --- queue-wait budget --------------------------------------------------------------

    def _check_queue_wait(self, label: str, executor: Any, active: int, now: float) -> None:
        if not executor.tasks or active:
            self._stalled_since.pop(label, None)
            return
        since = self._stalled_since.setdefault(label, now)
        assert self.queue_wait is not None
        if now - since >= self.queue_wait:
            reason = (
                f"no worker connected for {now - since:.0f} s with tasks waiting "
                f"(queue-wait budget {self.queue_wait:g} s); its blocks were cancelled"
            )
            self._give_up(label, executor, QueueWaitExceeded(label, reason), "abandoned")

    def _give_up(self, label: str, executor: Any, error: SiteFailure, verdict: str) -> None:
        """The site is out of this run: its tasks fail with `error` (failover moves
        them), its blocks are cancelled."""
        logger.warning("site %s: %s for this run: %s", label, verdict, error.reason)
        self.failover.health.abandon(label, error.reason)  # new tasks go elsewhere from now on
        _put_ahead(self.dfk, label)
        executor.set_bad_state_and_fail_all(error)
        cancel_active_blocks(label, executor)

    # --- in-flight guard ----------------------------------------------------------------

    def _check_in_flight(self, label: str, executor: Any, now: float) -> None:
        tunnel = getattr(executor, "tunnel", None)
        if tunnel is None:
            return
        repairs = len(tunnel.repairs)
        state = self._in_flight.setdefault(label, _InFlight(repairs_seen=repairs))
        current = _task_ids(executor)
        if repairs > state.repairs_seen:
            state.repairs_seen = repairs
            state.suspects |= current
            state.repaired_at = state.last_result_at = now
            state.newest_finished = -1
        elif state.suspects:
            finished = state.last_seen - current
            if finished:
                state.newest_finished = max(state.newest_finished, *finished)
                state.last_result_at = now
            state.suspects &= current
            p95 = self.failover.duration_quantile(label, 0.95)  # None: no task time yet
            grace = max(self.min_grace, 3 * (p95 or 0.0))
            if now - state.repaired_at >= grace:
                lost = _presumed_lost(
                    state, current, now - state.last_result_at >= grace, p95 is not None
                )
                if lost:
                    state.suspects -= lost
                    self._fail_lost(label, executor, lost)
        state.last_seen = current

    def _fail_lost(self, label: str, executor: Any, lost: set[int]) -> None:
        failed = 0
        for tid in sorted(lost):
            future = executor.tasks.get(tid)
            if future is None or future.done():
                continue
            replace_task_future(executor, tid, Future())  # a late result lands there, unseen
            try:
                future.set_exception(
                    PresumedLost(label, "in flight when its tunnel broke; no result since")
                )
                failed += 1
            except InvalidStateError:  # its result came in just now after all
                pass
        if failed:
            logger.warning("site %s: %d task(s) presumed lost in flight; retried", label, failed)
            self.failover.note_presumed_lost(failed)


def _presumed_lost(
    state: _InFlight, current: set[int], site_silent: bool, has_history: bool
) -> set[int]:
    """The suspects shown lost once the grace period has passed.

    A suspect is lost when a task submitted after it has finished since the repair (the
    interchange dispatched past it). When the site has been silent for a grace period
    with suspects outstanding, the suspects are what holds its workers: all of them are
    lost, provided newer tasks wait behind them or the site's task durations are known
    (without either, they may simply be long tasks still running, and are left alone).
    """
    lost = {tid for tid in state.suspects if tid < state.newest_finished}
    waiting = current - state.suspects
    if site_silent and (waiting or has_history):
        lost |= state.suspects
    return lost


def _put_ahead(dfk: Any, label: str) -> None:
    """The site's plain tasks (no resource specification: HTEX and Flux sites both take
    a priority) go ahead of the queue wherever failover moves them."""
    for record in list(getattr(dfk, "tasks", {}).values()):
        if record.get("executor") == label and not record.get("resource_specification"):
            record["resource_specification"] = {"priority": MOVED_PRIORITY}


def _active_managers(executor: Any) -> int:
    managers = executor.connected_managers()
    return sum(1 for manager in managers if manager.get("active", True))


def _worker_port(executor: Any) -> int | None:
    """The worker port of a site reached through pwgen's tunnel, else None."""
    port = getattr(getattr(executor, "tunnel", None), "port", None)
    return port if isinstance(port, int) else None


def _task_ids(executor: Any) -> set[int]:
    while True:
        try:
            return set(executor.tasks)
        except RuntimeError:  # the dict changed while we copied it
            continue

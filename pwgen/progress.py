"""What `pwgen run` shows while the workflow runs: each site's blocks and workers, the
tasks done, failed and moved, then a summary (and, with `--json`, a report).

A thread samples the run once a second, from what the run already holds: the DFK's
task counts, each executor's cached block states (`status_facade`: no scheduler call)
and its connected managers (one interchange command), failover's moves. On a terminal
the table is redrawn in place (rich, on stderr: stdout is the workflow's); otherwise a
plain line is printed when something changed, at most every `LINE_EVERY` seconds.
"""

import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from parsl.dataflow.states import States
from parsl.jobs.states import JobState
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pwgen.parsl_internals import INTERNAL_EXECUTOR

Mode = Literal["live", "lines", "quiet"]
#: Seconds between two samples, and between two plain lines at most.
SAMPLE_EVERY = 1.0
LINE_EVERY = 10.0

_DONE = (States.exec_done, States.memo_done)
_FAILED = (States.failed, States.dep_fail)
_RUNNING = (States.launched, States.running, States.running_ended)


@dataclass
class SiteSample:
    pending_blocks: int = 0
    running_blocks: int = 0
    workers: int = 0


@dataclass
class Sample:
    """One look at the run."""

    elapsed: float
    done: int
    failed: int
    running: int
    waiting: int
    moved: int
    sites: dict[str, SiteSample] = field(default_factory=dict)

    def line(self, run_id: str) -> str:
        sites = ", ".join(
            f"{label}: {s.running_blocks} running + {s.pending_blocks} pending blocks, "
            f"{s.workers} workers"
            for label, s in self.sites.items()
        )
        return (
            f"pwgen: run {run_id} {self.elapsed:.0f}s: {self.done} done, {self.failed} failed, "
            f"{self.running} launched, {self.waiting} waiting, {self.moved} moved | {sites}"
        )


def take_sample(dfk: Any, failover: Any, started: float) -> Sample:
    """The run now: task counts, each site's blocks and workers, moves so far."""
    counts = dict(dfk.task_state_counts)
    total = {
        name: sum(counts.get(s, 0) for s in states)
        for name, states in (("done", _DONE), ("failed", _FAILED), ("running", _RUNNING))
    }
    waiting = sum(counts.values()) - sum(total.values())
    sample = Sample(
        elapsed=time.monotonic() - started,
        waiting=waiting,
        moved=failover.moves,
        **total,
    )
    for label, executor in dfk.executors.items():
        if label != INTERNAL_EXECUTOR:
            sample.sites[label] = _site_sample(executor)
    return sample


def _site_sample(executor: Any) -> SiteSample:
    site = SiteSample()
    for status in list(getattr(executor, "status_facade", {}).values()):
        if status.state == JobState.PENDING:
            site.pending_blocks += 1
        elif status.state == JobState.RUNNING:
            site.running_blocks += 1
    try:
        managers = executor.connected_managers()
    except Exception:  # not an HTEX, or its interchange is gone
        managers = []
    site.workers = sum(m.get("worker_count", 0) for m in managers if m.get("active", True))
    return site


class RunProgress:
    """Samples the run in a thread and shows it; `stop()` returns the last sample."""

    def __init__(self, dfk: Any, failover: Any, run_id: str, mode: Mode) -> None:
        self.dfk, self.failover, self.run_id, self.mode = dfk, failover, run_id, mode
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pwgen-progress", daemon=True)

    def start(self) -> None:
        if self.mode != "quiet":
            self._thread.start()

    def stop(self) -> Sample:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        return take_sample(self.dfk, self.failover, self._started)

    def _run(self) -> None:
        if self.mode == "live":
            console = Console(stderr=True)
            with Live(console=console, refresh_per_second=2, transient=True) as live:
                while not self._stop.wait(SAMPLE_EVERY):
                    live.update(self._table(take_sample(self.dfk, self.failover, self._started)))
            return
        printed, shown = 0.0, None
        while not self._stop.wait(SAMPLE_EVERY):
            sample = take_sample(self.dfk, self.failover, self._started)
            state = replace(sample, elapsed=0.0)  # what changed, the clock left out
            if state != shown and time.monotonic() - printed >= LINE_EVERY:
                print(sample.line(self.run_id), file=sys.stderr, flush=True)
                printed, shown = time.monotonic(), state

    def _table(self, sample: Sample) -> Table:
        table = Table(
            title=f"run {self.run_id}, {sample.elapsed:.0f} s: {sample.done} done, "
            f"{sample.failed} failed, {sample.running} launched, {sample.waiting} waiting, "
            f"{sample.moved} moved",
            title_justify="left",
        )
        for column in ("site", "blocks running", "blocks pending", "workers"):
            table.add_column(column)
        for label, site in sample.sites.items():
            table.add_row(
                label, str(site.running_blocks), str(site.pending_blocks), str(site.workers)
            )
        return table


def summary_line(sample: Sample, run_id: str, exit_code: int) -> str:
    """The line printed at the end of every run (not with -q)."""
    return (
        f"pwgen: run {run_id} {'finished' if exit_code == 0 else f'exited {exit_code}'} "
        f"after {sample.elapsed:.1f} s: {sample.done} task(s) done, {sample.failed} failed, "
        f"{sample.moved} moved"
    )


def json_report(
    sample: Sample, run_id: str, exit_code: int, failover: dict[str, Any]
) -> dict[str, Any]:
    """`pwgen run --json`: the run's outcome, for scripts."""
    report = asdict(sample)
    report.update(run_id=run_id, exit_code=exit_code, failover=failover)
    return report

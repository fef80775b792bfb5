"""Per-site task statistics of one run, read from its Parsl monitoring database.

`pwgen run --monitor` records every site's tasks in `<run dir>/monitoring.db`
(Parsl's own schema: one `task` row per task, one `try` row per try with the
executor that ran it, `status` rows with each state change). This reads it with
sqlite3, read-only, and sums it up per site: tasks that ended there, how, how many
tries ran there, the moves between sites (a task whose next try ran on another
executor), and run times. Staging copies (tasks on Parsl's `_parsl_internal`
executor, here on the controller) are not a site's and are left out.
"""

import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

from pwgen.errors import PwgenError
from pwgen.layout import RunLayout
from pwgen.parsl_internals import INTERNAL_EXECUTOR  # staging copies: not a site's

T = TypeVar("T")

# Parsl's final task states, by how a user reads them.
DONE_STATES = {"exec_done", "memo_done"}
FAILED_STATES = {"failed", "dep_fail"}
FINAL_STATES = DONE_STATES | FAILED_STATES


class MonitoringError(PwgenError):
    """The run has no readable monitoring database."""


@dataclass
class SiteTasks:
    """One site's share of a run."""

    site: str
    tasks: int = 0  # tasks whose last try ran here
    done: int = 0
    failed: int = 0
    tries: int = 0  # every try launched here
    moved_in: int = 0
    moved_out: int = 0
    durations: list[float] = field(default_factory=list)  # running -> returned, tries that ran

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None

    @property
    def max_seconds(self) -> float | None:
        return max(self.durations) if self.durations else None


@dataclass
class RunTasks:
    """A run's tasks per site, and its moves (from, to) -> count."""

    run_id: str
    sites: list[SiteTasks]
    moves: dict[tuple[str, str], int]
    unfinished: int


def read_run_tasks(run_dir: Path) -> RunTasks:
    """Per-site statistics from `run_dir`/monitoring.db (MonitoringError if there is none)."""

    def read(conn: sqlite3.Connection) -> RunTasks:
        tries = conn.execute(
            "SELECT task_id, task_executor, task_try_time_running, task_try_time_returned "
            "FROM try ORDER BY task_id, try_id"
        ).fetchall()
        return _summarise(run_dir.name, tries, final_states(conn))

    return query_monitoring(run_dir, read)


def query_monitoring(run_dir: Path, read: Callable[[sqlite3.Connection], T]) -> T:
    """`read(connection)` on the run's monitoring database, opened read-only; a missing
    run, a run without the database or a broken one is one MonitoringError."""
    if not run_dir.is_dir():
        raise MonitoringError(
            f"no run {run_dir.name!r} in {run_dir.parent} (`pwgen status` lists the runs)"
        )
    db = RunLayout(run_dir).monitoring_db
    if not db.is_file():
        raise MonitoringError(
            f"run {run_dir.name} has no monitoring database ({db}): "
            "run the workflow with `pwgen run --monitor`"
        )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return read(conn)
    except sqlite3.Error as err:
        raise MonitoringError(f"{db}: cannot read the monitoring database: {err}") from None


def final_states(conn: sqlite3.Connection) -> dict[int, str]:
    """Each task's final state: its terminal one (done or failed) if it has one, else its
    latest. Not simply the latest row: a try left behind on a lost site still reports
    `running`/`running_ended` from its worker, sometimes after the task is done elsewhere."""
    finals: dict[int, str] = {}
    rows = conn.execute("SELECT task_id, task_status_name FROM status ORDER BY timestamp")
    for task_id, state in rows:
        if finals.get(task_id) not in FINAL_STATES:
            finals[task_id] = state
    return finals


def _summarise(
    run_id: str,
    tries: list[tuple[int, str, str | None, str | None]],
    states: dict[int, str],
) -> RunTasks:
    sites: dict[str, SiteTasks] = {}
    moves: Counter[tuple[str, str]] = Counter()
    executors_of: defaultdict[int, list[str]] = defaultdict(list)
    for task_id, executor, running, returned in tries:
        if executor == INTERNAL_EXECUTOR:  # pwgen's staging copies, run here
            continue
        site = sites.setdefault(executor, SiteTasks(executor))
        site.tries += 1
        executors_of[task_id].append(executor)
        duration = _seconds_between(running, returned)  # None: the try never ran
        if duration is not None and duration >= 0:
            site.durations.append(duration)
    unfinished = 0
    for task_id, executors in executors_of.items():
        for source, target in pairwise(executors):
            if source != target:
                moves[(source, target)] += 1
                sites[source].moved_out += 1
                sites[target].moved_in += 1
        last = sites[executors[-1]]
        last.tasks += 1
        state = states.get(task_id)
        if state in DONE_STATES:
            last.done += 1
        elif state in FAILED_STATES:
            last.failed += 1
        else:
            unfinished += 1
    ordered = sorted(sites.values(), key=lambda site: site.site)
    return RunTasks(run_id, ordered, dict(moves), unfinished)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def run_tasks_json(run: RunTasks) -> dict[str, object]:
    return {
        "run": run.run_id,
        "sites": [
            {
                "site": site.site,
                "tasks": site.tasks,
                "done": site.done,
                "failed": site.failed,
                "tries": site.tries,
                "moved_in": site.moved_in,
                "moved_out": site.moved_out,
                "median_seconds": site.median_seconds,
                "max_seconds": site.max_seconds,
            }
            for site in run.sites
        ],
        "moves": [{"from": a, "to": b, "tasks": n} for (a, b), n in sorted(run.moves.items())],
        "unfinished": run.unfinished,
    }

"""`pwgen status` reading a run's monitoring database: each task counted once, where its
last try ran, by its final state, even when a try left behind reports after the end."""

import sqlite3
from pathlib import Path

from pwgen.layout import RunLayout
from pwgen.status.tasks import read_run_tasks

# (task, try, executor, launched, running, returned) and (task, state, time): the
# columns of Parsl's `try` and `status` tables that pwgen reads.
TRIES = [
    (0, 0, "a", "2026-12-05 10:00:00.0", "2026-12-05 10:00:01.0", "2026-12-05 10:00:02.0"),
    (1, 0, "a", "2026-12-05 10:00:00.0", "2026-12-05 10:00:01.0", None),
    (1, 1, "b", "2026-12-05 10:00:03.0", "2026-12-05 10:00:04.0", "2026-12-05 10:00:05.0"),
    (2, 0, "b", "2026-12-05 10:00:06.0", None, None),
]
STATES = [
    (0, "running", "2026-12-05 10:00:01.0"),
    (0, "exec_done", "2026-12-05 10:00:02.0"),
    (1, "fail_retryable", "2026-12-05 10:00:03.0"),
    (1, "running", "2026-12-05 10:00:04.0"),
    (1, "exec_done", "2026-12-05 10:00:05.0"),
    # The try left behind on lost site a ends after the task was done on b.
    (1, "running_ended", "2026-12-05 10:00:05.5"),
    (2, "launched", "2026-12-05 10:00:06.0"),
]


def _run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "20261205-100000-abcdef"
    run_dir.mkdir()
    with sqlite3.connect(RunLayout(run_dir).monitoring_db) as conn:
        conn.execute(
            "CREATE TABLE try (task_id, try_id, task_executor, task_try_time_launched, "
            "task_try_time_running, task_try_time_returned)"
        )
        conn.execute("CREATE TABLE status (task_id, task_status_name, timestamp)")
        conn.executemany("INSERT INTO try VALUES (?, ?, ?, ?, ?, ?)", TRIES)
        conn.executemany("INSERT INTO status VALUES (?, ?, ?)", STATES)
    return run_dir


def test_each_task_counts_once_by_its_final_state(tmp_path: Path) -> None:
    run = read_run_tasks(_run_dir(tmp_path))
    a, b = run.sites  # by site
    assert (a.site, a.tasks, a.done, a.tries, a.moved_out) == ("a", 1, 1, 2, 1)
    # Task 1's late report from site a does not make it unfinished: it is done on b.
    assert (b.site, b.tasks, b.done, b.moved_in) == ("b", 2, 1, 1)
    assert run.moves == {("a", "b"): 1}
    assert run.unfinished == 1  # task 2, still launched

"""Capacity-aware placement (pwgen.placement).

Offline, with the launch hook and sites that only report their workers: a task goes to
the site with idle workers; a site without workers gets one task (its block is then
requested as Parsl would); with no room anywhere a task waits, and is placed when a task
finishes; retries, one-site apps and tasks with site-staged Files are not placed.

Real runs (`pwgen run` on two local HTEX sites, 4 workers and 1): under
`--placement capacity` the big site runs most of the tasks and the manifest counts them
per site and reason; under `--placement random` Parsl's pick is left alone.
"""

import json
import sqlite3
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import parsl_processes, run_pwgen
from parsl.data_provider.files import File

from pwgen.failover.policy import Failover
from pwgen.placement import Placement


class _Site:
    """What placement reads of a site executor: its connected managers."""

    def __init__(self, label: str, workers: int) -> None:
        self.label = label
        self.workers = workers
        self.bad_state_is_set = False

    def connected_managers(self) -> list[dict[str, Any]]:
        if not self.workers:
            return []
        return [{"worker_count": self.workers, "active": True}]


class _Harness:
    """A Placement over fake sites, its launches recorded instead of run."""

    def __init__(self, **workers: int) -> None:
        self.sites = {label: _Site(label, count) for label, count in workers.items()}
        self.dfk = SimpleNamespace(executors=self.sites)
        self.failover = Failover()
        self.launched: list[tuple[int, str, Future[Any]]] = []
        self.placement = Placement(self.dfk, self.failover)
        self.launch = self.placement._wrap(self._record)
        self.placement._refresh_workers()

    def _record(self, task_record: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.launched.append((task_record["id"], task_record["executor"], future))
        return future

    def task(self, task_id: int, allowed: list[str], **extra: Any) -> Future[Any]:
        self.failover.record_allowed(task_id, allowed)
        record = {"id": task_id, "executor": allowed[0], "fail_count": 0, "dfk": self.dfk}
        return self.launch({**record, **extra})

    def sites_of(self) -> Counter[str]:
        return Counter(site for _, site, _ in self.launched)


def test_a_task_goes_to_the_site_with_idle_workers() -> None:
    h = _Harness(small=1, big=4)
    for i in range(5):
        h.task(i, ["small", "big"])
    # big's idle workers first; at one idle worker each, small's empty queue wins.
    assert [site for _, site, _ in h.launched] == ["big", "big", "big", "small", "big"]
    report = h.placement.report()
    assert report["sites"] == {"big": {"idle worker": 4}, "small": {"idle worker": 1}}


def test_no_room_anywhere_holds_the_task_until_one_finishes() -> None:
    h = _Harness(a=1, b=1)
    futures = [h.task(i, ["a", "b"]) for i in range(5)]  # room: 2 per worker, so 4
    assert len(h.launched) == 4 and not futures[4].done()
    assert h.placement.report()["waiting"] == 1
    _, site, first = h.launched[0]
    first.set_result("done")
    assert futures[0].result() == "done"
    for task_record, held, placed_on in h.placement._placeable():
        h.placement._chain(held, task_record, placed_on)
    assert len(h.launched) == 5 and h.launched[4][1] == site  # the site that had room
    h.launched[4][2].set_result(42)
    assert futures[4].result() == 42  # the DFK's future completes with the real one


def test_held_tasks_whose_sites_all_went_bad_go_where_parsl_sent_them() -> None:
    h = _Harness(a=1, b=1)
    futures = [h.task(i, ["a", "b"]) for i in range(6)]
    assert len(h.launched) == 4
    for site in h.sites.values():
        site.bad_state_is_set = True  # failover's to handle now, not placement's
    for task_record, held, placed_on in h.placement._placeable():
        h.placement._chain(held, task_record, placed_on)
    assert [site for _, site, _ in h.launched[4:]] == ["a", "a"]  # their first choice
    assert h.placement.report()["waiting"] == 0 and not futures[5].done()


def test_a_task_with_a_stored_result_is_not_held_for_room() -> None:
    h = _Harness(a=1)
    h.sites["b"] = _Site("b", 0)
    stored: Future[Any] = Future()
    h.dfk.memoizer = SimpleNamespace(  # type: ignore[attr-defined]
        check_memo=lambda task: stored if task["id"] == 9 else None
    )
    for i in range(3):
        h.task(i, ["a", "b"])  # a: room 2, b: room 1
    h.task(8, ["a", "b"])  # no room, no stored result: held
    h.task(9, ["a", "b"])  # a resumed run's result: launched (Parsl returns it)
    assert [task for task, _, _ in h.launched] == [0, 1, 2, 9]
    assert h.placement.report()["waiting"] == 1


def test_a_site_without_workers_gets_one_task_to_start_its_block() -> None:
    h = _Harness(busy=1, fresh=0)
    for i in range(4):
        h.task(i, ["busy", "fresh"])
    assert h.sites_of() == Counter({"busy": 2, "fresh": 1})
    assert h.placement.report()["sites"]["fresh"] == {"no worker yet": 1}


def test_retries_one_site_apps_and_site_staged_files_are_not_placed() -> None:
    h = _Harness(a=0, b=8)
    h.sites["a"].remote_run_dir = "/home/u/run"  # type: ignore[attr-defined]
    h.task(1, ["a", "b"], fail_count=1)  # a retry: failover chose a
    h.task(2, ["a"])
    h.task(3, ["a", "b"], args=(File("file:///data/x"),), kwargs={})
    h.task(4, ["a", "b"])
    assert [site for _, site, _ in h.launched] == ["a", "a", "a", "b"]
    assert h.placement.report()["sites"] == {"a": {"fixed": 3}, "b": {"idle worker": 1}}


def test_a_task_with_a_walltime_skips_a_site_whose_blocks_end_too_soon() -> None:
    h = _Harness(ending=4, fresh=1)
    h.sites["ending"].provider = SimpleNamespace(walltime="00:10:00")  # type: ignore[attr-defined]
    h.sites["fresh"].provider = SimpleNamespace(walltime="01:00:00")  # type: ignore[attr-defined]
    h.placement._refresh_workers()
    h.placement._loads["ending"].blocks = {"0": time.monotonic() - 500}  # 100 s left
    h.task(1, ["ending", "fresh"], kwargs={"walltime": 30})  # 30 + 60 s margin fit
    h.task(2, ["ending", "fresh"], kwargs={"walltime": 50})  # does not: goes to fresh
    h.task(3, ["ending", "fresh"], kwargs={})  # no walltime: the idle workers
    assert [site for _, site, _ in h.launched] == ["ending", "fresh", "ending"]
    assert h.placement.report()["kept_from_ending_blocks"] == 1
    h.task(4, ["ending"], kwargs={"walltime": 5000})  # fits nowhere: where it was going
    assert h.launched[-1][1] == "ending"


def test_the_monitoring_database_gets_the_site_placement_chose(tmp_path: Path) -> None:
    db = tmp_path / "monitoring.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE try (run_id, task_id, try_id, task_executor)")
        conn.executemany("INSERT INTO try VALUES ('r', ?, ?, 'small')", [(0, 0), (1, 0), (1, 1)])
    h = _Harness(small=0, big=4)
    h.task(0, ["small", "big"])  # Parsl's pick was small; placement chose big
    h.placement.correct_monitoring(f"sqlite:///{db}", "r")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT task_id, try_id, task_executor FROM try ORDER BY 1, 2")
        assert rows.fetchall() == [(0, 0, "big"), (1, 0, "small"), (1, 1, "small")]


# --- real runs on two local sites ---------------------------------------------------------

SITES_YAML = """\
sites:
  - {label: big, scheduler: local, max_workers_per_node: 4, cores_per_worker: 0.5}
  - {label: small, scheduler: local, max_workers_per_node: 1}
"""

WORKFLOW = """\
import time
import parsl
from parsl import python_app

@python_app(executors=["big", "small"])
def nap(i):
    import time
    time.sleep(0.1)
    return i

# Both sites' workers connected first: the split then shows capacity, not start-up.
while not all(parsl.dfk().executors[site].connected_managers() for site in ("big", "small")):
    time.sleep(0.2)
print("ok", sorted(f.result() for f in [nap(i) for i in range(60)]) == list(range(60)))
"""


@pytest.mark.parametrize("mode", ["capacity", "random"])
def test_pwgen_run_places_by_capacity(tmp_path: Path, mode: str) -> None:
    assert parsl_processes() == [], "a previous test left Parsl processes"
    (tmp_path / "sites.yaml").write_text(SITES_YAML)
    (tmp_path / "wf.py").write_text(WORKFLOW)
    started = time.monotonic()
    done = run_pwgen("run", "wf.py", "--placement", mode, "-q", cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "ok True" in done.stdout
    (run_dir,) = (tmp_path / ".pwgen" / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    per_site = manifest["failover"]["completed"]
    assert sum(per_site.values()) == 60, (per_site, time.monotonic() - started)
    assert set(per_site) == {"big", "small"}  # each runs some: neither is starved
    if mode == "random":
        assert manifest["placement"] == {}
        return
    placed = manifest["placement"]
    assert placed["mode"] == "capacity" and placed["waiting"] == 0
    counted = {site: sum(reasons.values()) for site, reasons in placed["sites"].items()}
    assert counted == per_site
    assert per_site["big"] >= 2 * per_site["small"], per_site  # 4 workers vs 1

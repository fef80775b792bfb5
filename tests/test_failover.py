"""Failover: the policy's decisions (fast, no Parsl processes) and real runs on local sites.

The lab fault-injection runs are in tests/test_failover_lab.py; here two local sites
(Parsl's LocalProvider) show the plumbing end to end: tasks of a site put in bad
state mid-run move to the other site, pinned apps fail with the site's error,
`--no-failover` keeps Parsl's behaviour, walltime kills a bash app's processes.
"""

import datetime
import json
import subprocess
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.etree import ElementTree

import pytest
from helpers import parsl_processes, run_pwgen
from parsl.app.errors import AppTimeout
from parsl.data_provider.files import File
from parsl.executors import MPIExecutor
from parsl.executors.errors import BadStateException
from parsl.executors.high_throughput.errors import ManagerLost
from PIL import Image

from pwgen.executors import SiteFluxExecutor
from pwgen.failover.errors import PresumedLost, QueueWaitExceeded, is_site_failure
from pwgen.failover.health import SiteHealth
from pwgen.failover.policy import Failover
from pwgen.failover.watch import SiteWatch

# --- the policy, with the smallest stand-ins Parsl's hook sees -------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _dfk(*labels: str, bad: tuple[str, ...] = ()) -> Any:
    executors = {label: SimpleNamespace(bad_state_is_set=label in bad) for label in labels}
    return SimpleNamespace(executors=executors)


def _task(dfk: Any, executor: str, task_id: int = 1) -> dict[str, Any]:
    return {"id": task_id, "executor": executor, "dfk": dfk, "func_name": "app"}


def test_application_error_is_retried_in_place_at_a_cost() -> None:
    failover = Failover()
    dfk = _dfk("a", "b")
    failover.record_allowed(1, ["a", "b"])
    task = _task(dfk, "a")
    assert failover(ZeroDivisionError("app bug"), task) == 1.0
    assert task["executor"] == "a"
    assert failover.report()["moves"] == 0


def test_site_failure_moves_the_task_for_free() -> None:
    failover = Failover()
    dfk = _dfk("a", "b", "c", bad=("c",))
    failover.record_allowed(1, ["a", "b", "c"])
    task = _task(dfk, "a")
    assert failover(ManagerLost(b"m1", "node1"), task) == 0.0
    assert task["executor"] == "b"  # c is in bad state
    report = failover.report()
    assert report["moves"] == 1 and report["routes"] == {"a->b": 1}
    assert report["events"][0]["error"].startswith("ManagerLost")


class _MPISite(MPIExecutor):
    """An MPIExecutor as the policy sees one (never started)."""

    bad_state_is_set = False

    def __init__(self) -> None:
        pass


def test_tasks_move_only_between_executors_of_one_kind() -> None:
    failover = Failover()
    dfk = _dfk("htex1", "htex2")
    dfk.executors["mpi1"] = _MPISite()
    failover.record_allowed(1, ["htex1", "mpi1", "htex2"])
    task = _task(dfk, "htex1")
    for _ in range(4):
        failover(ManagerLost(b"m", "n"), task)
        assert task["executor"] in ("htex1", "htex2")
    failover.record_allowed(2, ["mpi1", "htex1"])
    mpi_task = _task(dfk, "mpi1", task_id=2)
    assert failover(ManagerLost(b"m", "n"), mpi_task) == 0.0 and mpi_task["executor"] == "mpi1"


class _FluxSite(SiteFluxExecutor):
    """A Flux site as the policy sees one (never started)."""

    bad_state_is_set = False

    def __init__(self) -> None:
        pass


def test_flux_jobs_move_only_between_flux_sites_plain_tasks_also_to_htex() -> None:
    failover = Failover()
    dfk = _dfk("htex1")
    dfk.executors["flux1"] = _FluxSite()
    dfk.executors["flux2"] = _FluxSite()
    dfk.executors["mpi1"] = _MPISite()
    ranks = {"num_tasks": 2, "num_nodes": 2}
    for task_id, spec, targets in (
        (1, ranks, {"flux2"}),  # a Flux job: only another Flux site reads its keys
        (2, {}, {"flux2", "htex1"}),  # a plain task runs in any HTEX pool
        (3, {"priority": 1}, {"flux2", "htex1"}),
    ):
        seen = set()
        for _ in range(6):
            failover.record_allowed(task_id, ["flux1", "flux2", "htex1", "mpi1"])
            task = _task(dfk, "flux1", task_id) | {"resource_specification": spec}
            failover(ManagerLost(b"m", "n"), task)
            seen.add(task["executor"])
        assert seen == targets, (spec, seen)


def test_a_task_with_site_staged_files_stays_on_its_site() -> None:
    failover = Failover()
    dfk = _dfk("a", "b")
    dfk.executors["a"].remote_run_dir = "/home/u/.pwgen/run"  # a pwgen site executor
    for staged in (File("file:///data/x"), File("zip:/data/x.zip/y")):
        failover.record_allowed(1, ["a", "b"])
        task = _task(dfk, "a") | {"args": (), "kwargs": {"inputs": [staged]}}
        assert failover(ManagerLost(b"m", "n"), task) == 0.0 and task["executor"] == "a"


def test_pinned_app_is_retried_in_place_then_charged() -> None:
    failover = Failover(site_retries=2, threshold=10)
    dfk = _dfk("a", "b")
    failover.record_allowed(1, ["a"])
    task = _task(dfk, "a")
    costs = [failover(ManagerLost(b"m", "n"), task) for _ in range(3)]
    assert costs == [0.0, 0.0, 1.0] and task["executor"] == "a"


def test_nowhere_to_go_fails_the_task() -> None:
    failover = Failover()
    dfk = _dfk("a", "b", bad=("a", "b"))
    failover.record_allowed(1, ["a", "b"])
    assert (
        failover(BadStateException(SimpleNamespace(label="a"), RuntimeError("x")), _task(dfk, "a"))
        > 1e9
    )


def test_disabled_failover_keeps_parsl_behaviour() -> None:
    failover = Failover(enabled=False)
    dfk = _dfk("a", "b")
    failover.record_allowed(1, ["a", "b"])
    task = _task(dfk, "a")
    assert failover(ManagerLost(b"m", "n"), task) == 1.0 and task["executor"] == "a"
    assert failover.report()["site_failures"] == {"a": 1}


def test_a_bad_state_executors_own_exception_counts_as_the_sites() -> None:
    failover = Failover()
    refusal = RuntimeError("blocks failed")
    dfk = _dfk("a", "b")
    dfk.executors["a"].executor_exception = refusal
    failover.record_allowed(1, ["a", "b"])
    task = _task(dfk, "a")
    assert failover(refusal, task) == 0.0 and task["executor"] == "b"


def test_health_avoids_after_k_failures_and_readmits_after_cool_down() -> None:
    clock = Clock()
    health = SiteHealth(threshold=2, cool_down=30, clock=clock)
    assert not health.failed("a") and health.healthy("a")
    assert health.failed("a") and not health.healthy("a")
    clock.now = 31
    assert health.healthy("a")
    assert health.failed("a") and not health.healthy("a")  # the count was kept
    health.succeeded("a")
    assert health.healthy("a")
    health.abandon("a", "queue wait")
    clock.now = 1e6
    assert not health.healthy("a") and health.abandoned() == {"a": "queue wait"}


def test_site_level_errors() -> None:
    assert is_site_failure(QueueWaitExceeded("a", "x"))
    assert is_site_failure(PresumedLost("a", "x"))
    assert not is_site_failure(AppTimeout("slow"))
    assert not is_site_failure(ConnectionError("raised by the app"))


class _Executor:
    """What SiteWatch reads of a site executor."""

    def __init__(self) -> None:
        self.tasks: dict[int, Future[Any]] = {}
        self.tunnel = SimpleNamespace(repairs=[])
        self.managers: list[dict[str, Any]] = []
        self.bad_state_is_set = False
        self.provider = None
        self.failed_with: Exception | None = None

    def connected_managers(self) -> list[dict[str, Any]]:
        return self.managers

    def set_bad_state_and_fail_all(self, exception: Exception) -> None:
        self.bad_state_is_set = True
        self.failed_with = exception


def test_queue_wait_budget_abandons_a_site_without_workers() -> None:
    failover = Failover()
    site = _Executor()
    site.tasks[0] = Future()
    watch = SiteWatch(failover, SimpleNamespace(executors={"a": site}), queue_wait=10)
    watch.check_once(100.0)
    site.managers = [{"active": True}]
    watch.check_once(105.0)  # a worker connected: the clock starts again
    site.managers = []
    watch.check_once(106.0)
    watch.check_once(115.0)
    assert not site.bad_state_is_set
    watch.check_once(116.5)
    assert isinstance(site.failed_with, QueueWaitExceeded)
    assert "queue-wait budget 10 s" in failover.health.abandoned()["a"]


def test_tasks_lost_in_a_broken_tunnel_are_failed_for_retry() -> None:
    failover = Failover()
    site = _Executor()
    site.tasks = {tid: Future() for tid in range(4)}
    watch = SiteWatch(failover, SimpleNamespace(executors={"a": site}), queue_wait=None)
    watch.check_once(0.0)
    site.tunnel.repairs.append("master")
    watch.check_once(1.0)  # suspects: 0..3
    originals = dict(site.tasks)
    del site.tasks[3]  # a later task finished after the repair
    watch.check_once(5.0)
    assert not any(f.done() for f in originals.values())  # still within the grace period
    watch.check_once(11.5)
    for tid in (0, 1, 2):
        assert isinstance(originals[tid].exception(), PresumedLost)
        assert site.tasks[tid] is not originals[tid]  # a late result goes nowhere
    assert failover.report()["presumed_lost"] == 3


def test_lost_results_that_hold_every_worker_are_failed_for_retry() -> None:
    """Nothing finishes after the repair because the lost tasks hold the site's workers:
    with newer tasks waiting, the suspects are presumed lost after the grace period."""
    failover = Failover()
    site = _Executor()
    site.tasks = {tid: Future() for tid in range(2)}  # both on the site's two workers
    watch = SiteWatch(failover, SimpleNamespace(executors={"a": site}), queue_wait=None)
    watch.check_once(0.0)
    site.tunnel.repairs.append("master")
    watch.check_once(1.0)  # suspects: 0, 1
    originals = dict(site.tasks)
    watch.check_once(12.0)  # past the grace, but nothing waits behind them: long tasks?
    assert not any(f.done() for f in originals.values())
    site.tasks[2] = Future()  # a newer task waits; still nothing finishes
    watch.check_once(13.0)
    assert all(isinstance(f.exception(), PresumedLost) for f in originals.values())
    assert not site.tasks[2].done()
    assert failover.report()["presumed_lost"] == 2


def test_lost_tasks_with_nothing_behind_them_are_failed_once_the_site_is_silent() -> None:
    """Every task was submitted before the tunnel broke and the lost ones hold the site's
    workers: nothing waits and nothing finishes. With the site's task durations known,
    a whole grace period of silence presumes them lost; a result resets the clock."""
    failover = Failover()
    started = datetime.datetime(2026, 1, 1)
    done = {"executor": "a", "id": 99, "try_time_launched": started}
    failover.task_done({**done, "try_time_returned": started + datetime.timedelta(seconds=2)}, True)
    site = _Executor()
    site.tasks = {tid: Future() for tid in range(3)}
    watch = SiteWatch(failover, SimpleNamespace(executors={"a": site}), queue_wait=None)
    watch.check_once(0.0)
    site.tunnel.repairs.append("master")
    watch.check_once(1.0)  # suspects: 0, 1, 2
    originals = dict(site.tasks)
    del site.tasks[0]  # the oldest finishes: the site still works, the others may be long
    watch.check_once(8.0)
    watch.check_once(12.0)  # past the grace since the repair, but not since that result
    assert not any(originals[tid].done() for tid in (1, 2))
    watch.check_once(18.5)
    assert all(isinstance(originals[tid].exception(), PresumedLost) for tid in (1, 2))
    assert failover.report()["presumed_lost"] == 2


# --- real runs on two local sites -------------------------------------------------------

SITES_YAML = """\
sites:
  - label: a
    scheduler: local
    max_workers_per_node: 2
  - label: b
    scheduler: local
    max_workers_per_node: 2
"""

BAD_STATE_WORKFLOW = """\
import parsl, time
from parsl import python_app

@python_app(executors=["a", "b"])
def nap(i):
    import time
    time.sleep(0.2)
    return i

@python_app(executors=["a"])
def pinned():
    return 1

futures = [nap(i) for i in range(40)]
time.sleep(1)
parsl.dfk().executors["a"].set_bad_state_and_fail_all(RuntimeError("injected"))
print("all", sorted(f.result() for f in futures) == list(range(40)))
print("after", [nap(i).result() for i in range(4)])
try:
    pinned().result()
except Exception as err:
    print("pinned", type(err).__name__, err)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert parsl_processes() == [], "a previous test left Parsl processes"
    (tmp_path / "sites.yaml").write_text(SITES_YAML)
    return tmp_path


def _manifest(project: Path) -> dict[str, Any]:
    (run_dir,) = (project / ".pwgen" / "runs").iterdir()
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return manifest


@pytest.mark.e2e
def test_tasks_of_a_broken_site_move_and_are_counted(project: Path) -> None:
    (project / "wf.py").write_text(BAD_STATE_WORKFLOW)
    done = run_pwgen("run", "wf.py", "--sites", "sites.yaml", "--monitor", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "all True" in done.stdout and "after [0, 1, 2, 3]" in done.stdout
    assert "pinned RuntimeError injected" in done.stdout
    failover = _manifest(project)["failover"]
    assert failover["moves"] > 0 and set(failover["routes"]) == {"a->b"}
    assert f"pwgen: failover: {failover['moves']} task(s) moved (a->b:" in done.stderr
    (run_dir,) = (project / ".pwgen" / "runs").iterdir()
    assert (run_dir / "pwgen.log").read_text().count("moved a -> b") == failover["moves"]
    assert parsl_processes() == []
    # The monitoring database saw the same run: every task, its tries and its moves.
    shown = run_pwgen("status", "--run", run_dir.name, "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    tasks = {site["site"]: site for site in json.loads(shown.stdout)["sites"]}
    assert tasks["b"]["done"] == 40 + 4 - tasks["a"]["done"]
    assert tasks["a"]["failed"] == 1  # the pinned app
    assert tasks["a"]["moved_out"] == tasks["b"]["moved_in"] == failover["moves"]
    assert json.loads(shown.stdout)["unfinished"] == 0
    # The picture of the run, read back as a person would see it: a lane per site, a
    # bar per try coloured by outcome, an arrow per move.
    drawn = run_pwgen("status", "--run", run_dir.name, "--plot", "run.html", cwd=project)
    assert drawn.returncode == 0, drawn.stderr
    page = (project / "run.html").read_text()
    svg = ElementTree.fromstring(page[page.index("<svg") : page.index("</svg>") + 6])
    ns = "{http://www.w3.org/2000/svg}"
    lanes = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "lane"]
    assert lanes == ["a", "b"]
    outcomes = Counter(r.get("class") for r in svg.iter(f"{ns}rect"))
    tries = sum(site["tries"] for site in tasks.values())
    assert outcomes["done"] == 44 and outcomes["moved"] == failover["moves"]
    assert outcomes["done"] + outcomes["moved"] + outcomes["failed"] == tries
    arrows = [line for line in svg.iter(f"{ns}line") if line.get("class") == "move"]
    assert len(arrows) == failover["moves"]
    assert outcomes["block-running"] >= 2  # each site's block, running
    assert f"{tries} tries on 2 site(s), {failover['moves']} moved" in drawn.stdout
    # Rendered as a person sees it (librsvg) and read back: orange (moved) bars in a's
    # lane only, green (done) ones in b's.
    drawn = run_pwgen("status", "--run", run_dir.name, "--plot", "run.svg", cwd=project)
    assert drawn.returncode == 0, drawn.stderr
    subprocess.run(["rsvg-convert", "run.svg", "-o", "run.png"], cwd=project, check=True)
    lane_b = next(float(t.get("y", 0)) - 12 for t in svg.iter(f"{ns}text") if t.text == "b")
    axis = next(
        float(line.get("y1", 0)) for line in svg.iter(f"{ns}line") if line.get("class") == "axis"
    )
    with Image.open(project / "run.png") as image:
        pixels = image.convert("RGB")
        rows: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}
        for x in range(0, pixels.width, 2):
            for y in range(0, int(axis)):  # the lanes, not the legend below
                colour = "#{:02x}{:02x}{:02x}".format(*pixels.getpixel((x, y)))
                rows["a" if y < lane_b else "b"][colour] += 1
    assert rows["a"]["#f0a020"] > 0 and rows["b"]["#f0a020"] == 0  # moved: a -> b
    assert rows["b"]["#2e9d4a"] > 0  # done on b


@pytest.mark.e2e
def test_no_failover_retries_in_place(project: Path) -> None:
    (project / "wf.py").write_text(BAD_STATE_WORKFLOW)
    done = run_pwgen("run", "wf.py", "--sites", "sites.yaml", "--no-failover", cwd=project)
    assert done.returncode == 1  # tasks on a failed with the injected error
    assert "RuntimeError: injected" in done.stderr or "BadStateException" in done.stderr
    failover = _manifest(project)["failover"]
    assert failover["enabled"] is False and failover["moves"] == 0
    assert failover["site_failures"]["a"] > 0


@pytest.mark.e2e
def test_walltime_kills_a_bash_apps_process_group(project: Path) -> None:
    marker = f"sleep 3{time.monotonic_ns() % 1000}.5"
    (project / "wf.py").write_text(
        "from parsl import bash_app\n"
        "from parsl.app.errors import AppTimeout\n\n"
        "@bash_app(executors=['a'])\n"
        "def slow(walltime=2):\n"
        f"    return '{marker} & {marker}; wait'\n\n"
        "try:\n    slow().result()\n"
        "except AppTimeout as err:\n    print('AppTimeout', err)\n"
        # While the block still runs: its cancel at cleanup would kill them anyway.
        "import subprocess\n"
        f"found = subprocess.run(['pgrep', '-f', '^{marker}'], capture_output=True, text=True)\n"
        "print('left:', found.stdout.split())\n"
    )
    done = run_pwgen("run", "wf.py", "--sites", "sites.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "AppTimeout App slow exceeded walltime: 2 seconds" in done.stdout
    assert "left: []" in done.stdout

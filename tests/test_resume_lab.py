"""A controller killed -9 on two lab sites: the sites stop, `pwgen run --resume` finishes.

600 tasks that may run on either site each append a marker line on the site (the
site user's home; the lab's sites share this machine's filesystem, so the test counts
them here). When about half are done, the `pwgen run` process is killed with SIGKILL:

- within 10 s its interchanges are gone here and its blocks and worker pools on both
  sites (the interchange's guard tears the run down), and no task runs after that;
- `pwgen run --resume RUN_ID` reuses the checkpointed results: every result present
  and correct, and all executions together at most ~10 % over 600.
"""

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PWGEN, assert_one_line_error, run_pwgen
from lab_helpers import on_project_site, provisioned_lab, wait_for

from pwgen.lab.sitefiles import site_dir
from pwgen.lab.state import LabState
from pwgen.ssh.command import Master
from pwgen.status import scan_processes

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwrs", "10.212.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-resume-lab"
SITES = str(LAB_DIR / "sites.yaml")
TASKS = 600
MARKS = "resume-marks.txt"

WORKFLOW = Path(__file__).parent.parent / "examples" / "resume.py"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LabState]]:
    """Two provisioned lab sites (2 compute nodes each)."""
    path = tmp_path_factory.mktemp("project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, path, sites=2, compute_nodes=2) as state:
        yield path, state


def _marks_files(state: LabState) -> list[Path]:
    """The marker file in each site user's home (the site's shared /home, seen from here)."""
    homes = [
        site_dir(Path(state.state_dir), site.label) / "home" / site.user for site in state.sites
    ]
    return [home / MARKS for home in homes]


def _marks(state: LabState) -> list[str]:
    """Every marker line the tasks wrote on both sites."""
    return [
        line
        for path in _marks_files(state)
        if path.exists()
        for line in path.read_text().splitlines()
    ]


def _clear_marks(state: LabState) -> None:
    for path in _marks_files(state):
        path.unlink(missing_ok=True)


#: The site user's processes (the lab's nodes share this machine's pid space).
PROCESSES = "ps -u \"$(id -u)\" -o stat=,args= | grep -v '^Z' || true"


def _site_idle(project: Path, label: str) -> bool:
    """No job of the site user queued or running (completing ones are being killed), no
    worker pool or relay running."""
    try:  # through the run's ssh master while it lives: its teardown may stop it meanwhile
        queue = on_project_site(project, label, "squeue -h -t PD,CF,R,S", Master.JOIN)
        live = on_project_site(project, label, PROCESSES, Master.JOIN)
    except AssertionError:
        return False
    return queue == "" and "process_worker_pool" not in live and "pwgen-relay" not in live


def _helpers_here(runs_dir: Path) -> list[str]:
    """The runs' interchanges and Parsl processes still running here."""
    procs = scan_processes(runs_dir.resolve())
    return [proc.command for proc in procs if proc.kind in ("interchange", "parsl")]


def _start(project: Path, out: Path, *options: str) -> subprocess.Popen[str]:
    argv = [str(PWGEN), "run", str(WORKFLOW), "--sites", SITES, *options]
    return subprocess.Popen(
        [*argv, "--", str(TASKS), "0.1", str(out), MARKS],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=out.with_suffix(".stderr").open("w"),
        text=True,
    )


def test_a_run_killed_at_half_stops_its_sites_and_resumes(lab: tuple[Path, LabState]) -> None:
    project, state = lab
    _clear_marks(state)
    out = project / "crashed.json"
    run = _start(project, out)
    try:
        assert wait_for(lambda: len(_marks(state)) >= TASKS // 2, timeout=300), _marks(state)
    finally:
        run.send_signal(signal.SIGKILL)  # at half way, or at once on a failure
    killed_at, at_kill = time.monotonic(), len(_marks(state))
    run.wait()
    runs_dir = project / ".pwgen" / "runs"
    (run_dir,) = list(runs_dir.iterdir())
    # Within 10 s: no interchange here, nothing on the sites, no task after that.
    assert wait_for(lambda: not _helpers_here(runs_dir), timeout=10), _helpers_here(runs_dir)
    for label in ("lab1", "lab2"):
        remaining = 10 - (time.monotonic() - killed_at)
        assert wait_for(lambda label=label: _site_idle(project, label), max(remaining, 0.5))
    stopped = len(_marks(state))
    assert stopped - at_kill < TASKS // 10, (at_kill, stopped)
    time.sleep(3)
    assert len(_marks(state)) == stopped, "tasks ran after the sites were stopped"
    assert "torn down" in (run_dir / "teardown.log").read_text()
    shown = run_pwgen("status", "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    (crashed,) = json.loads(shown.stdout)["runs"]
    assert crashed["state"] == "crashed, torn down"
    resumed_out = project / "resumed.json"
    resumed = _start(project, resumed_out, "--resume", run_dir.name)
    assert resumed.wait(timeout=400) == 0, resumed_out.with_suffix(".stderr").read_text()
    results = json.loads(resumed_out.read_text())
    assert results == [[i, i * i] for i in range(TASKS)]
    marks = _marks(state)
    assert {int(line.split()[0]) for line in marks} == set(range(TASKS))
    assert len(marks) <= TASKS * 1.1, f"{len(marks)} executions for {TASKS} tasks"
    manifest = json.loads(max(runs_dir.iterdir()).joinpath("manifest.json").read_text())
    assert manifest["resumed_from"] == run_dir.name
    assert manifest["reused_results"] >= stopped - TASKS // 20


def test_resume_refuses_in_one_line(lab: tuple[Path, LabState]) -> None:
    project, _ = lab
    done = run_pwgen("run", str(WORKFLOW), "--sites", SITES, "--resume", "no-such-run", cwd=project)
    assert_one_line_error(done, "--resume no-such-run: no such run")

"""Fault injection on two lab sites: every result arrives once, whatever breaks on site 1.

Each run submits 1,000 short tasks that may run on either site, waits until a tenth
of them is done, breaks something on lab1, and checks that all 1,000 results come
back, correct and each exactly once. The faults: the tunnel's ssh master killed, the
partition drained (blocks stay pending: the queue-wait budget moves the work), the
site lost (slurmd and worker pools killed), the site down before the run starts.
Plus walltime: a python and a bash app over their walltime raise AppTimeout, and the
bash command's processes are gone from the compute node.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from background_run import BackgroundRun
from helpers import assert_one_line_error, parsl_processes, run_pwgen
from lab_helpers import (
    master_pid,
    netns_processes,
    on_project_site,
    project_ssh,
    provisioned_lab,
    wait_for,
)

from pwgen.lab import lifecycle
from pwgen.lab.nodes import run_in
from pwgen.lab.plan import make_options
from pwgen.lab.state import LabState, load_state

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwfo", "10.237.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-failover-lab"
SITES = str(LAB_DIR / "sites.yaml")
TASKS = 1000

WORKFLOW = """\
import concurrent.futures, json, os, sys
from parsl import bash_app, python_app

@python_app(executors=["lab1", "lab2"])
def square(i, pause):
    import socket, time
    time.sleep(pause)
    return i, i * i, socket.gethostname()

@bash_app(executors=["lab1", "lab2"])
def echo_host(i, pause, stdout=None):
    return f"sleep {pause}; echo {i} $(hostname)"

count, pause, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
streams = sys.argv[4] if len(sys.argv) > 4 else None  # a bash app every 10 tasks
futures = []
for i in range(count):
    futures.append(square(i, pause))
    if streams and i % 10 == 0:  # appended to: a try brought back twice shows
        futures.append(echo_host(i, pause, stdout=(os.path.join(streams, f"{i}.out"), "a")))
print("submitted", flush=True)
done = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
while sum(f.done() for f in futures) < count // 10:
    concurrent.futures.wait(futures, timeout=0.05)
print("progress", flush=True)
results = [f.result() for f in futures if not isinstance(f.result(), int)]
for i, squared, host in results:
    print(f"result {i} {squared} {host}")
with open(out, "w") as fh:
    json.dump(results, fh)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two provisioned lab sites (2 compute nodes each) and the fault workflow."""
    path = tmp_path_factory.mktemp("project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, path, sites=2, compute_nodes=2):
        (path / "squares.py").write_text(WORKFLOW)
        yield path


@pytest.fixture(autouse=True)
def _no_parsl_before() -> None:
    assert parsl_processes() == [], "a previous test left Parsl processes"


def _lab() -> LabState:
    state = load_state(LAB_DIR)
    assert state is not None
    return state


def _restore_lab() -> None:
    """`lab up` again: restarts whatever daemon a test killed."""
    lifecycle.up(make_options(PREFIX, SUBNET, 2, 2, LAB_DIR))


def _kill_in_node(netns: str, *markers: str) -> None:
    """SIGKILL a lab node's processes (that node's only: pkill would see the machine's)."""
    for marker in markers:
        for line in netns_processes(netns, marker):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


def _run_ok(project: Path, workflow: Path) -> str:
    """`pwgen run` of a workflow on both sites; it exits 0; its stdout."""
    done = run_pwgen("run", str(workflow), "--sites", SITES, cwd=project, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Run(BackgroundRun):
    """`pwgen run squares.py` of TASKS tasks in the background."""

    def __init__(
        self, project: Path, *options: str, pause: float = 0.02, streams: Path | None = None
    ) -> None:
        self.out = project / f"results-{time.monotonic_ns()}.json"
        args = [str(TASKS), str(pause), str(self.out), *([str(streams)] if streams else [])]
        super().__init__(project, "squares.py", SITES, list(options), args)


def _assert_every_result_once(run: Run, stdout: str) -> list[str]:
    """All TASKS results correct, each printed once; returns the hosts they ran on."""
    results = json.loads(run.out.read_text())
    assert sorted(i for i, _, _ in results) == list(range(TASKS))
    assert all(squared == i * i for i, squared, _ in results)
    lines = [line for line in stdout.splitlines() if line.startswith("result ")]
    assert len(lines) == len(set(lines)) == TASKS
    return [host for _, _, host in results]


def _assert_nothing_left(project: Path, labels: tuple[str, ...] = ("lab1", "lab2")) -> None:
    assert wait_for(lambda: parsl_processes() == [], timeout=20), parsl_processes()
    for label in labels:
        assert wait_for(lambda label=label: on_project_site(project, label, "squeue -h") == "", 30)
        live = on_project_site(project, label, "ps -eo stat=,args= | grep -v '^Z' || true")
        assert "pwgen-relay" not in live and "process_worker_pool" not in live, live


def test_tunnel_master_killed_mid_run(project: Path) -> None:
    run = Run(project, "--monitor")
    run.wait_for_line("progress")
    os.kill(master_pid(project_ssh(project).command("lab1")), signal.SIGKILL)
    stdout = run.finish()
    hosts = _assert_every_result_once(run, stdout)
    assert {host.split("-")[0] for host in hosts} == {"lab1", "lab2"}
    assert "tunnel repaired: master" in (run.run_dir() / "pwgen.log").read_text()
    assert run.manifest()["failover"]["abandoned"] == {}  # a broken tunnel is no lost site
    _assert_nothing_left(project)
    # One monitoring database holds both sites' tasks, each with its final state.
    shown = run_pwgen("status", "--run", run.run_dir().name, "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    sites = {site["site"]: site for site in json.loads(shown.stdout)["sites"]}
    assert set(sites) == {"lab1", "lab2"} and json.loads(shown.stdout)["unfinished"] == 0
    assert sum(site["done"] for site in sites.values()) == TASKS
    assert sites["lab1"]["done"] == sum(host.startswith("lab1-") for host in hosts)


def test_drained_partition_moves_work_within_the_queue_wait_budget(project: Path) -> None:
    login = _lab().site("lab1").login  # type: ignore[union-attr]
    run_in(login, ["scontrol", "update", "PartitionName=compute", "State=DOWN"])
    try:
        run = Run(project, "--queue-wait", "10")
        stdout = run.finish()
    finally:
        run_in(login, ["scontrol", "update", "PartitionName=compute", "State=UP"])
    hosts = _assert_every_result_once(run, stdout)
    assert all(host.startswith("lab2-") for host in hosts)
    failover = run.manifest()["failover"]
    assert failover["moves"] > 0 and failover["routes"].get("lab1->lab2") == failover["moves"]
    assert "queue-wait budget 10 s" in failover["abandoned"]["lab1"]
    _assert_nothing_left(project)  # lab1's pending block was cancelled


def test_walltime_kills_python_and_bash_apps(project: Path) -> None:
    workflow = project / "walltime.py"
    workflow.write_text(
        "from parsl import bash_app, python_app\n"
        "from parsl.app.errors import AppTimeout\n\n"
        "@bash_app(executors=['lab1'])\n"
        "def slow_bash(walltime=3):\n"
        "    return 'sleep 301 & sleep 302; wait'\n\n"
        "@python_app(executors=['lab1'])\n"
        "def slow_python(walltime=3):\n"
        "    import time\n"
        "    while True:\n"
        "        time.sleep(0.1)\n\n"
        "@python_app(executors=['lab1'])\n"
        "def sleeps_left():\n"
        "    import os\n"
        "    found = []\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "        except OSError:\n"
        "            continue\n"
        "        if args[:2] in ([b'sleep', b'301'], [b'sleep', b'302']):\n"
        "            found.append(pid)\n"
        "    return found\n\n"
        "for app in (slow_bash, slow_python):\n"
        "    try:\n"
        "        app().result()\n"
        "    except AppTimeout as err:\n"
        "        print(app.__name__, 'AppTimeout', err, flush=True)\n"
        # Asked on the site while its block still runs (cancelling it would kill them).
        "print('sleeps left:', sleeps_left().result())\n"
    )
    stdout = _run_ok(project, workflow)
    assert "slow_bash AppTimeout" in stdout and "slow_python AppTimeout" in stdout
    assert "sleeps left: []" in stdout
    _assert_nothing_left(project)


def test_site_down_before_the_run(project: Path) -> None:
    login = _lab().site("lab1").login  # type: ignore[union-attr]
    project_ssh(project).stop_master("lab1")
    _kill_in_node(login.netns, "sshd")
    try:
        refused = run_pwgen(
            "run",
            "squares.py",
            "--sites",
            SITES,
            "--require-all-sites",
            "--",
            "1",
            "0",
            "x",
            cwd=project,
        )
        assert_one_line_error(refused, "unreachable site(s): lab1: ssh: connect to host")
        pinned = project / "pinned.py"
        pinned.write_text(
            "from parsl import python_app\n"
            "@python_app(executors=['lab1'])\n"
            "def only_lab1():\n    return 1\n\n"
            "try:\n    only_lab1().result()\n"
            "except Exception as err:\n    print('pinned:', type(err).__name__, err)\n"
        )
        done = run_pwgen("run", str(pinned), "--sites", SITES, cwd=project, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "pinned: SiteUnavailable site lab1:" in done.stdout
        assert "lab1 unreachable" in done.stderr
        run = Run(project)
        stdout = run.finish()
    finally:
        _restore_lab()
    hosts = _assert_every_result_once(run, stdout)
    assert all(host.startswith("lab2-") for host in hosts)
    manifest = run.manifest()
    assert list(manifest["unavailable_sites"]) == ["lab1"]
    _assert_nothing_left(project, ("lab2",))


def test_a_loaded_machine_loses_no_site(project: Path) -> None:
    """Every core busy with a CPU hog for the whole run: heartbeats and results come
    late, but no site is declared lost and nothing moves."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        run = Run(project, pause=0.05)
        run.wait_for_line("progress")
        stdout = run.finish()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    hosts = _assert_every_result_once(run, stdout)
    assert {host.split("-")[0] for host in hosts} == {"lab1", "lab2"}
    failover = run.manifest()["failover"]
    assert failover["abandoned"] == {} and failover["moves"] == 0, failover
    assert "lost for this run" not in (run.run_dir() / "pwgen.log").read_text()


def test_site_lost_mid_run(project: Path) -> None:
    """Last: it leaves lab1's Slurm in a state only a new lab fully clears. Bash apps
    among the tasks: each stdout comes from the one site that ran the task."""
    streams = project / "streams-lost"
    run = Run(project, "--queue-wait", "20", pause=0.05, streams=streams)
    run.wait_for_line("progress")
    run.wait_until_watched("lab1")
    for node in _lab().site("lab1").computes:  # type: ignore[union-attr]
        _kill_in_node(node.netns, "slurmd", "process_worker_pool")
    stdout = run.finish()
    _assert_every_result_once(run, stdout)
    outs = {int(path.stem): path.read_text().splitlines() for path in streams.glob("*.out")}
    assert sorted(outs) == list(range(0, TASKS, 10))
    assert all(len(lines) == 1 and lines[0].split()[0] == str(i) for i, lines in outs.items())
    assert any(lines[0].split()[1].startswith("lab2-") for lines in outs.values())
    failover = run.manifest()["failover"]
    assert failover["moves"] > 0
    assert set(failover["routes"]) == {"lab1->lab2"}
    # Declared lost from its closed worker connections, before the queue-wait budget.
    assert "workers' connections closed" in failover["abandoned"]["lab1"]
    assert failover["completed"].get("lab2", 0) >= TASKS // 2
    assert wait_for(lambda: parsl_processes() == [], timeout=20), parsl_processes()

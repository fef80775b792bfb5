"""`pwgen run` on a real OpenPBS site next to a Slurm site: what works on Slurm, on PBS.

Lab (marked `lab`, root; prefix pwpj, 10.219.0.0/16): lab1 runs OpenPBS (built once per
machine, see tests/test_pbs_lab.py; blocks of 2 nodes), lab2 Slurm, 2 compute nodes
each, provisioned.

- Staging: a File in and out of a python app and a bash app's `stdout=`/`stderr=` on
  the PBS site, which shares no filesystem with the controller.
- MPI: lab1 as an `executor: mpi` site runs two 2-rank MPICH apps at once, a node
  each, then one across both nodes, in one 2-node PBS job (`mpiexec -n -ppn -hosts`,
  Parsl's PBS prefix; the lab's PBS sites have MPICH first on PATH, see
  pwgen/lab/pbs_mpich.py).
- A 2-node HTEX block: `place=scatter`, a worker pool on each node (MpiExecLauncher).
- Failover both ways: PBS's queue stopped (`qmgr ... started = False`) sends every task
  to the Slurm site within the queue-wait budget and the queued PBS job is qdel'ed; a
  Slurm partition down sends them to the PBS site; the PBS site lost mid-run (moms and
  worker pools killed) sends the rest to the Slurm site.
- `pwgen status` shows a killed run's PBS job; `pwgen teardown` qdel's it.
"""

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from background_run import BackgroundRun
from helpers import PWGEN, REPO, parsl_processes, run_pwgen
from lab_helpers import (
    killed_with_interchanges_held,
    masters_stopped,
    netns_processes,
    on_project_site,
    pwgen_provision,
    running_lab,
    wait_for,
)

from pwgen.lab import lifecycle
from pwgen.lab.nodes import run_in
from pwgen.lab.pbs import in_node
from pwgen.lab.plan import make_options
from pwgen.lab.state import LabState

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwpj", "10.219.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-pbs-run-lab"
SCHEDULERS = ("pbspro", "slurm")
SITES = "sites.yaml"
TASKS = 200

WORKFLOW = """\
import concurrent.futures, json, sys
from parsl import python_app

@python_app(executors=["lab1", "lab2"])
def square(i, pause):
    import socket, time
    time.sleep(pause)
    return i, i * i, socket.gethostname()

count, pause, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
futures = [square(i, pause) for i in range(count)]
print("submitted", flush=True)
while sum(f.done() for f in futures) < count // 10:
    concurrent.futures.wait(futures, timeout=0.05)
print("progress", flush=True)
with open(out, "w") as fh:
    json.dump([f.result() for f in futures], fh)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabState, Path]]:
    """The PBS + Slurm lab and a project provisioned on both sites."""
    project = tmp_path_factory.mktemp("project")
    with running_lab(PREFIX, SUBNET, LAB_DIR, 2, 2, SCHEDULERS) as state:
        sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
        sites["sites"][0]["nodes_per_block"] = 2  # PBS blocks of 2 nodes: place=scatter
        (project / SITES).write_text(yaml.safe_dump(sites))
        (project / "squares.py").write_text(WORKFLOW)
        known_hosts = str(LAB_DIR / "known_hosts")
        pwgen_provision(project, "--sites", SITES, "--known-hosts", known_hosts)
        with masters_stopped(project, ["lab1", "lab2"]):
            yield state, project


@pytest.fixture(autouse=True)
def _no_parsl_before() -> None:
    assert parsl_processes() == [], "a previous test left Parsl processes"


def _pbs(project: Path, command: str) -> str:
    return on_project_site(project, "lab1", command)


def _live_pbs_jobs(project: Path) -> dict[str, Any]:
    """The site user's PBS jobs not finished (qstat without -x), by id."""
    jobs: dict[str, Any] = json.loads(_pbs(project, "qstat -f -F json")).get("Jobs", {})
    return {job_id: job for job_id, job in jobs.items() if job["job_state"] != "F"}


def _assert_nothing_left(project: Path) -> None:
    assert wait_for(lambda: parsl_processes() == [], timeout=20), parsl_processes()
    # qdel'ed: PBS signals the job, waits up to kill_delay, then lists it as finished.
    assert wait_for(lambda: _live_pbs_jobs(project) == {}, timeout=60), _live_pbs_jobs(project)
    assert wait_for(lambda: on_project_site(project, "lab2", "squeue -h") == "", 30)
    for label in ("lab1", "lab2"):
        live = on_project_site(project, label, "ps -eo stat=,args= | grep -v '^Z' || true")
        assert "pwgen-relay" not in live and "process_worker_pool" not in live, live


class Run(BackgroundRun):
    """`pwgen run squares.py` of TASKS tasks in the background."""

    def __init__(self, project: Path, *options: str, pause: float = 0.05) -> None:
        self.out = project / f"results-{time.monotonic_ns()}.json"
        args = [str(TASKS), str(pause), str(self.out)]
        super().__init__(project, "squares.py", SITES, list(options), args)

    def hosts(self) -> list[str]:
        """Waits for a clean exit; the hosts of the results, all TASKS of them checked."""
        self.finish()
        results = json.loads(self.out.read_text())
        assert [(i, squared) for i, squared, _ in results] == [(i, i * i) for i in range(TASKS)]
        return [host for _, _, host in results]


# ---------------------------------------------------------------- staging


STAGING = """\
import sys
from parsl import File, bash_app, python_app

@python_app(executors=["lab1"])
def reverse(inputs=(), outputs=()):
    import os, socket
    data = open(inputs[0].filepath, "rb").read()
    open(outputs[0].filepath, "wb").write(data[::-1])
    return socket.gethostname(), os.environ.get("PBS_JOBID", "")

@bash_app(executors=["lab1"])
def count(inputs=(), stdout=None, stderr=None):
    return f"wc -c < {inputs[0].filepath}; echo on $(hostname) >&2"

source, target, out, err = sys.argv[1:5]
host, job = reverse(inputs=[File(source)], outputs=[File(target)]).result()
count(inputs=[File(source)], stdout=out, stderr=err).result()
print(f"reversed on {host} in PBS job {job}")
"""


def test_files_and_a_bash_apps_streams_staged_on_the_pbs_site(
    lab: tuple[LabState, Path],
) -> None:
    _, project = lab
    data = os.urandom(3_000_000)
    (project / "in.bin").write_bytes(data)
    (project / "staging.py").write_text(STAGING)
    args = ["in.bin", "out/rev.bin", "out/count.out", "out/count.err"]
    done = run_pwgen("run", "staging.py", "--sites", SITES, "--", *args, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reversed on lab1-c" in done.stdout and ".lab1-login" in done.stdout
    assert (project / "out" / "rev.bin").read_bytes() == data[::-1]
    assert (project / "out" / "count.out").read_text().strip() == str(len(data))
    # Parsl's bash apps write the command to stderr first, then its own stderr follows.
    assert (project / "out" / "count.err").read_text().splitlines()[-1].startswith("on lab1-c")
    _assert_nothing_left(project)


# ---------------------------------------------------------------- MPI

# examples/mpi.py's apps (defined in the workflow: Parsl ships them by value), two of 2
# ranks on one node each at once, then one of 2 ranks across both nodes (Hydra starts
# the second node's proxy through pbs_tmrsh).
MPI_MAIN = """
binary = python_app(build, executors=["lab1"])(
    SOURCE.read_text(), "mpi_hello",
    parsl_resource_specification={"num_nodes": 1, "ranks_per_node": 1},
)
run = python_app(hello, executors=["lab1"])
one_node = {"num_nodes": 1, "ranks_per_node": 2}
side_by_side = [run(binary, 4, parsl_resource_specification=one_node) for _ in "ab"]
both = [f.result() for f in side_by_side]
across = run(binary, 0, parsl_resource_specification={"num_nodes": 2, "ranks_per_node": 1})
for report in [*both, across.result()]:
    print("report", json.dumps(report), flush=True)
"""


def _mpi_workflow() -> str:
    example = (REPO / "examples" / "mpi.py").read_text()
    source = example.split('if __name__ == "__main__":')[0]
    return (
        source.replace("Path(__file__)", f"Path({str(REPO / 'examples' / 'mpi.py')!r})") + MPI_MAIN
    )


def test_mpich_apps_in_one_two_node_pbs_block(lab: tuple[LabState, Path], tmp_path: Path) -> None:
    _, project = lab
    sites = yaml.safe_load((project / SITES).read_text())
    lab1 = {**sites["sites"][0], "executor": "mpi", "nodes_per_block": 2}
    (tmp_path / SITES).write_text(yaml.safe_dump({"sites": [lab1]}))
    (tmp_path / "mpi_run.py").write_text(_mpi_workflow())
    known_hosts = str(LAB_DIR / "known_hosts")
    pwgen_provision(tmp_path, "--sites", SITES, "--known-hosts", known_hosts)
    # The facts saw the site's MPICH, which takes Parsl's PBS prefix (pwgen.configgen.mpi).
    facts = json.loads((tmp_path / ".pwgen" / "facts" / "lab1.json").read_text())
    assert facts["mpi"]["flavor"] == "mpich", facts["mpi"]
    with masters_stopped(tmp_path, ["lab1"]):
        done = run_pwgen("run", "mpi_run.py", "--sites", SITES, cwd=tmp_path, timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
    reports = [json.loads(line[7:]) for line in done.stdout.splitlines() if line[:7] == "report "]
    assert len(reports) == 3, done.stdout
    for report in reports:  # every app: 2 ranks that talked (Allreduce), in one PBS job
        assert report["size"] == 2 and report["rank_sum"] == 1, report
        assert sorted(rank["rank"] for rank in report["ranks"]) == [0, 1], report
        assert report["job_id"] == reports[0]["job_id"] and ".lab1-login" in report["job_id"]
    a, b, across = reports
    # Parsl's PBS prefix, as MPICH's mpiexec takes it; a node each, at the same time.
    assert a["command"].startswith("mpiexec -n 2 -ppn 2 -hosts lab1-c"), a
    hosts = [{rank["host"] for rank in report["ranks"]} for report in (a, b)]
    assert sorted(hosts, key=sorted) == [{"lab1-c1"}, {"lab1-c2"}], hosts
    assert a["start"] < b["end"] and b["start"] < a["end"], (a, b)
    assert across["command"].startswith("mpiexec -n 2 -ppn 1 -hosts lab1-c"), across
    assert {rank["host"] for rank in across["ranks"]} == {"lab1-c1", "lab1-c2"}, across
    _assert_nothing_left(project)


HOSTS = """\
import json
from parsl import python_app

@python_app(executors=["lab1"])
def where(pause):
    import os, socket, time
    time.sleep(pause)
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as pool:  # the worker's pool
        lean = pool.read().split(b"\\0")[1:4] == [b"-m", b"pwgen_worker", b"run"]
    return socket.gethostname(), os.environ.get("PBS_JOBID"), lean

print(json.dumps(sorted(set(f.result() for f in [where(1) for _ in range(8)]))))
"""


def test_a_two_node_htex_block_has_a_pool_on_each_node(lab: tuple[LabState, Path]) -> None:
    _, project = lab
    (project / "hosts.py").write_text(HOSTS)
    done = run_pwgen("run", "hosts.py", "--sites", SITES, cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # place=scatter, and MpiExecLauncher started a pool on both nodes of one PBS job,
    # each started lean (pwgen.executors.pool_launch).
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert [host for host, _, _ in seen] == ["lab1-c1", "lab1-c2"], seen
    assert len({job for _, job, _ in seen}) == 1 and seen[0][1].endswith(".lab1-login"), seen
    assert all(lean for _, _, lean in seen), seen
    run_dir = max((project / ".pwgen" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    config = (run_dir / "parsl_config.py").read_text()
    assert "scheduler_options='#PBS -l place=scatter'" in config
    _assert_nothing_left(project)


# ---------------------------------------------------------------- failover


def _set_pbs_queue_started(state: LabState, started: bool) -> None:
    assert state.pbs is not None
    command = f"set queue workq started = {started}"
    in_node(state.site("lab1").login, Path(state.pbs.prefix), ["qmgr", "-c", command])  # type: ignore[union-attr]


def test_stopped_pbs_queue_sends_work_to_slurm_within_the_budget(
    lab: tuple[LabState, Path],
) -> None:
    state, project = lab
    _set_pbs_queue_started(state, False)
    try:
        run = Run(project, "--queue-wait", "10")
        # The run's PBS block waits in the stopped queue: a real queued (Q) PBS job.
        assert wait_for(
            lambda: any(j["job_state"] == "Q" for j in _live_pbs_jobs(project).values()), 60
        )
        hosts = run.hosts()
    finally:
        _set_pbs_queue_started(state, True)
    assert all(host.startswith("lab2-") for host in hosts)
    failover = run.manifest()["failover"]
    assert failover["moves"] > 0 and failover["routes"].get("lab1->lab2") == failover["moves"]
    assert "queue-wait budget 10 s" in failover["abandoned"]["lab1"]
    _assert_nothing_left(project)  # the queued PBS job was qdel'ed


def test_slurm_partition_down_sends_work_to_pbs(lab: tuple[LabState, Path]) -> None:
    state, project = lab
    login = state.site("lab2").login  # type: ignore[union-attr]
    run_in(login, ["scontrol", "update", "PartitionName=compute", "State=DOWN"])
    try:
        hosts = Run(project, "--queue-wait", "10").hosts()
    finally:
        run_in(login, ["scontrol", "update", "PartitionName=compute", "State=UP"])
    assert all(host.startswith("lab1-") for host in hosts)
    _assert_nothing_left(project)


# ---------------------------------------------------------------- status and teardown


NAP = """\
from parsl import python_app
@python_app(executors=['lab1'])
def nap():
    import time; time.sleep(300)

f = nap()
print('submitted', flush=True)
f.result()
"""


def test_status_shows_and_teardown_cancels_a_killed_runs_pbs_job(
    lab: tuple[LabState, Path],
) -> None:
    _, project = lab
    (project / "nap.py").write_text(NAP)
    out = project / "nap.out"
    with out.open("w") as handle:  # a file: the orphaned interchange keeps it open
        argv = [str(PWGEN), "run", "nap.py", "--sites", SITES]
        proc = subprocess.Popen(argv, cwd=project, stdout=handle, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "submitted" in out.read_text(), timeout=60), out.read_text()
        running = lambda: any(j["job_state"] == "R" for j in _live_pbs_jobs(project).values())  # noqa: E731
        assert wait_for(running, timeout=60), _live_pbs_jobs(project)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        raise
    with killed_with_interchanges_held(proc):
        _status_then_teardown(project)
    _assert_nothing_left(project)  # the guards, continued, found their interchange gone


def _status_then_teardown(project: Path) -> None:
    """`pwgen status` shows the killed run's PBS job; `pwgen teardown` qdel's it."""
    (job_id,) = _live_pbs_jobs(project)
    shown = run_pwgen("status", "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    (run,) = [run for run in status["runs"] if run["state"] == "crashed"]
    (lab1,) = [site for site in status["sites"] if site["label"] == "lab1"]
    blocks = [(block["job_id"], block["state"], block["run_id"]) for block in lab1["blocks"]]
    assert blocks == [(job_id, "RUNNING", run["run_id"])], lab1

    done = run_pwgen("teardown", "--json", cwd=project, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] and report["torn_down"] == [run["run_id"]], report
    actions = [(action["where"], action["what"], action["ok"]) for action in report["actions"]]
    assert ("lab1", f"cancelled job {job_id}", True) in actions, actions


# ---------------------------------------------------------------- site lost (last: it kills)


def _kill_pbs_site_workers(state: LabState) -> None:
    """SIGKILL the PBS site's moms and worker pools (each node's own processes)."""
    for node in state.site("lab1").computes:  # type: ignore[union-attr]
        for marker in ("pbs_mom", "process_worker_pool"):
            for line in netns_processes(node.netns, marker):
                os.kill(int(line.split(":")[0]), signal.SIGKILL)


def test_pbs_site_lost_mid_run_sends_the_rest_to_slurm(lab: tuple[LabState, Path]) -> None:
    state, project = lab
    try:
        run = Run(project, pause=0.1)
        run.wait_for_line("progress")
        run.wait_until_watched("lab1")
        _kill_pbs_site_workers(state)
        hosts = run.hosts()
    finally:
        assert state.pbs is not None
        options = make_options(
            PREFIX, SUBNET, 2, 2, LAB_DIR, schedulers=SCHEDULERS, pbs=state.pbs.source
        )
        lifecycle.up(options)  # restarts the moms
    assert {host.split("-")[0] for host in hosts} == {"lab1", "lab2"}
    failover = run.manifest()["failover"]
    assert "lab1" in failover["abandoned"] and failover["routes"].get("lab1->lab2"), failover
    _assert_nothing_left(project)

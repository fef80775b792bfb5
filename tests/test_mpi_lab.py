"""MPI sites: `pwgen run examples/mpi.py` runs 2-rank OpenMPI apps side by side in one block.

Offline: `SiteMPIExecutor` refuses resource specs that Parsl would accept and then never
run (no `num_nodes`, more nodes than a block has).

Lab (marked `lab`, root): 2 Slurm sites x 2 compute nodes (prefix pwmp, 10.231.0.0/16),
both `executor: mpi` with `nodes_per_block: 2`, provisioned. The example builds its C
program with mpicc on each site and runs two apps of 2 ranks (`srun --mpi=pmix`) per
site: every app sees size 2 and ranks {0, 1}, the two apps of a site take one compute
node each of the same Slurm job and their run times overlap; afterwards no job, worker
pool, relay or MPI process is left on the sites and no Parsl process of the run here.
"""

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, run_pwgen
from lab_helpers import (
    masters_stopped,
    netns_processes,
    pwgen_provision,
    running_lab,
    ssh,
    wait_for,
)
from parsl.executors.errors import InvalidResourceSpecification
from parsl.launchers import SimpleLauncher
from parsl.providers import LocalProvider

from pwgen.executors import SiteMPIExecutor
from pwgen.lab.state import LabState

PREFIX, SUBNET = "pwmp", "10.231.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-mpi-lab"
LABELS = ("lab1", "lab2")
REPORT = re.compile(r"^mpi app (\w+)/(\w+): (\{.*\})$", re.MULTILINE)
# What a site must not run once the workflow is over.
LEFTOVERS = ("process_worker_pool", "pwgen-relay", "mpi_hello", "srun", "slurmstepd")
MARKERS = ("interchange.py", "process_worker_pool", "parsl: ")


# --- offline: resource specs that would never run -------------------------------------


def mpi_executor(tmp_path: Path) -> SiteMPIExecutor:
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host s1\n    HostName 192.0.2.1\n")
    provider = LocalProvider(launcher=SimpleLauncher(), nodes_per_block=2)
    return SiteMPIExecutor(
        label="s1",
        provider=provider,
        ssh_config=str(ssh_config),
        host="s1",
        internal_address="192.0.2.1",
        relay="/opt/pwgen-relay",
        remote_dir="/work",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"num_ranks": 4}, "must say how many nodes"),
        ({"num_nodes": 3, "ranks_per_node": 1}, "num_nodes=3, expected a whole number from 1 to 2"),
        ({"num_nodes": 0, "ranks_per_node": 1}, "num_nodes=0"),
        ({"num_nodes": "2", "ranks_per_node": 1}, "num_nodes='2'"),
        ({"num_nodes": 1, "ranks": 2}, "ranks"),  # Parsl's own check: unknown key
    ],
)
def test_resource_specs_that_would_never_run_are_refused(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidResourceSpecification, match=message):
        mpi_executor(tmp_path).validate_resource_spec(spec)


def test_a_spec_that_fits_the_block_passes(tmp_path: Path) -> None:
    spec: dict[str, Any] = {"num_nodes": 2, "ranks_per_node": 2, "launcher_options": "--mpi=pmix"}
    mpi_executor(tmp_path).validate_resource_spec(spec)
    assert spec["num_ranks"] == "4"  # Parsl fills in the total


# --- lab: the example on two provisioned MPI sites --------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabState, Path]]:
    """The lab, and a project whose MPI sites file (2 nodes per block) is provisioned."""
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=2) as state:
        project = tmp_path_factory.mktemp("project")
        sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
        for site in sites["sites"]:
            site.update(executor="mpi", nodes_per_block=2)
        (project / "sites.yaml").write_text(yaml.safe_dump(sites, sort_keys=False))
        known_hosts = str(LAB_DIR / "known_hosts")
        pwgen_provision(project, "--sites", "sites.yaml", "--known-hosts", known_hosts, "--json")
        with masters_stopped(project, LABELS):
            yield state, project


def _reports(stdout: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{site: {app: report}} from the example's `mpi app SITE/NAME: {...}` lines."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for site, app, text in REPORT.findall(stdout):
        found.setdefault(site, {})[app] = json.loads(text)
    return found


def _local_parsl_processes(project: Path) -> list[str]:
    """Interchanges and worker pools started from the project dir (not other runs')."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = (proc / "cwd").resolve()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and cwd.is_relative_to(project) and any(m in cmdline for m in MARKERS):
            found.append(f"{proc.name}: {cmdline}")
    return found


def _leftovers(state: LabState) -> list[str]:
    """Jobs and run processes still on the lab's nodes."""
    found = []
    for site in state.sites:
        queue = ssh(LAB_DIR, site.label, "squeue -h").splitlines()
        found += [f"{site.label} job {line}" for line in queue]
        for node in site.nodes:
            for marker in LEFTOVERS:
                found += [f"{node.name}: {line}" for line in netns_processes(node.netns, marker)]
    return found


def _assert_nothing_left(state: LabState, project: Path) -> None:
    assert _local_parsl_processes(project) == []
    # A cancelled job's slurmstepd may take a moment to exit after squeue forgets it.
    if not wait_for(lambda: _leftovers(state) == [], timeout=30):
        assert _leftovers(state) == []


@pytest.mark.lab
def test_two_mpi_apps_run_at_once_in_one_block(lab: tuple[LabState, Path]) -> None:
    state, project = lab
    example = str(REPO / "examples" / "mpi.py")
    done = run_pwgen("run", example, "--sites", "sites.yaml", cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = _reports(done.stdout)
    assert set(reports) == set(LABELS), done.stdout
    for label, apps in reports.items():
        assert set(apps) == {"a", "b"}, apps
        nodes = []
        for app in apps.values():
            assert app["size"] == 2 and app["rank_sum"] == 1, app
            assert sorted(rank["rank"] for rank in app["ranks"]) == [0, 1], app
            # num_nodes 1: both ranks on one node, launched by srun through PMIx.
            (host,) = {rank["host"] for rank in app["ranks"]}
            nodes.append(host)
            assert app["command"].startswith("srun --ntasks 2 --ntasks-per-node 2"), app
            assert "--mpi=pmix" in app["command"], app
        # One Slurm job (block) of the site ran both apps, one compute node each ...
        assert apps["a"]["job_id"] == apps["b"]["job_id"], apps
        assert sorted(nodes) == [f"{label}-c1", f"{label}-c2"], nodes
        # ... at the same time: each started before the other ended.
        a, b = apps["a"], apps["b"]
        assert a["start"] < b["end"] and b["start"] < a["end"], (a, b)
        assert f"{label}: concurrent yes" in done.stdout
    _assert_nothing_left(state, project)

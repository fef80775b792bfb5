"""Flux sites: HTEX whose every block is one Flux instance (docs/flux.md).

Fast: the generated executor of a flux site (`SiteFluxExecutor`, its block launched by
`FluxInstanceLauncher` with the `flux` the facts, the sites file or the env name; the
pool's worker count), the block's launch script, and the resource keys a Flux site
takes and refuses at the app call.

Real Flux on this machine (the lab's flux-core build, made once per machine from
../shared/flux; without the tarball: a skip, or a failure under CI):
`pwgen_worker.run_in_flux` inside `flux start`, as a site's worker runs it: a python
app as 2 ranks returns rank 0's result, an app's exception is raised, a bash app's
command runs as the ranks, a request Flux cannot satisfy and a worker outside any
instance each fail with one line.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from facts_samples import COMPUTE, DEBUG, provisioned_facts
from lab_helpers import flux_tarball
from parsl.executors.errors import InvalidResourceSpecification
from parsl.providers import LocalProvider

from pwgen.configgen import render_config
from pwgen.errors import ConfigError
from pwgen.executors import SiteFluxExecutor
from pwgen.lab.flux import ensure_flux
from pwgen.providers import FluxInstanceLauncher
from pwgen.sites import Site, parse_sites

HOME = "/home/fu"
ENV = f"{HOME}/.pwgen/envs/abc123"
WORKER_HELPERS = (
    Path(__file__).parents[1]
    / "pwgen/ansible/ansible_collections/pwgen/hpc/roles/relay/files/pwgen_worker.py"
)


def flux_site(extra: str = "") -> Site:
    text = (
        "sites:\n  - {label: f1, scheduler: slurm, host: f1.example, executor: flux, "
        f"nodes_per_block: 2{extra}}}\n"
    )
    return parse_sites(text, source="sites.yaml")[0]


def write_state(state: Path, facts: dict[str, Any]) -> None:
    (state / "facts").mkdir(parents=True, exist_ok=True)
    (state / "ssh").mkdir(exist_ok=True)
    (state / "ssh" / "config").write_text("Host f1\n    HostName 192.0.2.1\n")
    (state / "facts" / "f1.json").write_text(json.dumps(facts))


def facts(**overrides: Any) -> dict[str, Any]:
    """A flux site's facts: 16-CPU, 64 GiB nodes."""
    compute = {**COMPUTE, "cpus_per_node": 16, "memory_mb_per_node": 65536}
    return provisioned_facts(
        "f1", home=HOME, env_dir=ENV, partitions=[compute, dict(DEBUG)], **overrides
    )


def config_text(tmp_path: Path, site: Site, **fact_overrides: Any) -> str:
    state = tmp_path / ".pwgen"
    write_state(state, facts(**fact_overrides))
    return render_config([site], source="sites.yaml", state_dir=state)


# --- the generated executor -------------------------------------------------------------


def test_flux_site_config_text(tmp_path: Path) -> None:
    source = config_text(
        tmp_path, flux_site(", flux: {method: system, version: 0.88.0, path: /opt/flux}")
    )
    ast.parse(source)
    assert "from pwgen.executors import SiteFluxExecutor, lean_worker_pool\n" in source
    assert "from pwgen.providers import FluxInstanceLauncher, SSHSlurmProvider\n" in source
    for line in (
        "site_f1 = SiteFluxExecutor(\n",
        "    max_workers_per_node=32,  # facts: every core of the block "
        "(the pool runs on its first node)\n",
        "        nodes_per_block=2,  # sites.yaml\n",
        "        launcher=FluxInstanceLauncher(\n"
        "            flux='/opt/flux/bin/flux',\n"
        "            srun_args=['--mpi=pmi2'],\n"
        "        ),  # one Flux instance per block; flux from f1: flux.path\n",
        "    encrypted=True,  # CurveZMQ; certs copied to the site per run\n",
    ):
        assert line in source, line


def test_flux_comes_from_the_facts_then_the_sites_file_then_the_env(tmp_path: Path) -> None:
    gathered = {
        "version": "0.88.0",
        "prefix": "/sw/flux-0.88",
        "command": "/sw/flux-0.88/bin/flux",
        "bindings": "/sw/flux-0.88/lib/python3.11/site-packages",
        "mpi_default": "pmi2",
        "srun_args": [],
    }
    site = flux_site(", flux: {method: system, version: 0.88.0, path: /opt/flux}")
    source = config_text(tmp_path, site, flux=gathered)
    assert "flux='/sw/flux-0.88/bin/flux',\n            srun_args=[],\n" in source
    assert "flux from facts: flux 0.88.0" in source
    assert f"flux='{ENV}/bin/flux'," in config_text(tmp_path, flux_site())
    given = config_text(tmp_path, flux_site(", max_workers_per_node: 3"))
    assert "    max_workers_per_node=3,  # sites.yaml\n" in given


def test_flux_sites_are_slurm_sites(tmp_path: Path) -> None:
    pbs = flux_site().model_copy(update={"scheduler": "pbspro"})
    state = tmp_path / ".pwgen"
    write_state(state, facts(scheduler="pbspro"))
    with pytest.raises(ConfigError, match="Flux sites on Slurm clusters only"):
        render_config([pbs], source="sites.yaml", state_dir=state)


def test_block_script_starts_one_instance_with_the_pool_inside() -> None:
    launcher = FluxInstanceLauncher("/opt/my flux/bin/flux")
    script = launcher("process_worker_pool.py --cert_dir '{x}' $HOME", 1, 2, "/w/scripts")
    lines = script.splitlines()
    assert "SCRIPT_DIR=/w/scripts" in lines
    # The pool's command goes into the script as it is: nothing expands at write time.
    at = lines.index("cat << 'PWGEN_FLUX_EOF' > ${SCRIPT_DIR:+$SCRIPT_DIR/}cmd_$SLURM_JOB_NAME.sh")
    assert lines[at + 1 : at + 3] == [
        "process_worker_pool.py --cert_dir '{x}' $HOME",
        "PWGEN_FLUX_EOF",
    ]
    assert lines[-1] == (
        "srun --nodes=2 --ntasks-per-node=1 --mpi=pmi2 --cpus-per-task=$SLURM_CPUS_ON_NODE "
        "'/opt/my flux/bin/flux' start /bin/bash ${SCRIPT_DIR:+$SCRIPT_DIR/}cmd_$SLURM_JOB_NAME.sh"
    )
    with pytest.raises(ValueError, match="expected an absolute path"):
        FluxInstanceLauncher("flux")


def _executor(tmp_path: Path) -> SiteFluxExecutor:
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host f1\n")
    provider = LocalProvider(nodes_per_block=2, launcher=FluxInstanceLauncher("/opt/f/bin/flux"))
    return SiteFluxExecutor(
        label="f1",
        provider=provider,
        ssh_config=str(ssh_config),
        host="f1",
        internal_address="10.0.0.1",
        relay="/opt/relay",
        remote_dir="/home/u/work",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"num_ranks": 2}, "a Flux site takes num_tasks, num_nodes"),
        ({"num_tasks": 0}, r"num_tasks=0, expected a whole number ≥ 1"),
        ({"num_tasks": "2"}, r"num_tasks='2', expected a whole number"),
        ({"num_tasks": 2, "num_nodes": 3}, r"num_nodes=3 but a block has 2"),
    ],
)
def test_flux_site_refuses_what_flux_would_not_run(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    executor = _executor(tmp_path)
    with pytest.raises(InvalidResourceSpecification, match=message):
        executor.validate_resource_spec(spec)
    executor.validate_resource_spec({"num_tasks": 4, "num_nodes": 2, "priority": 1})
    executor.validate_resource_spec(None)  # type: ignore[arg-type]  # an app's default
    assert executor.flux == "/opt/f/bin/flux"


# --- pwgen_worker.run_in_flux in a real Flux instance -------------------------------------

# Runs as the initial program of `flux start`, as a worker of a Flux site's pool would
# (its functions travel by value: they are __main__'s).
DRIVER = """\
import json, os, sys
sys.path.insert(0, sys.argv[2])
import pwgen_worker

flux, jobs = sys.argv[1], sys.argv[3]

def ranks(x):
    import os
    return x * 2, os.environ["FLUX_TASK_RANK"], os.environ["FLUX_JOB_SIZE"]

def broken():
    raise KeyError("from the app")

def command(path):
    return 'echo "rank $FLUX_TASK_RANK of $FLUX_JOB_SIZE" >> ' + path

def job(**keys):
    return {**keys, "flux": flux, "jobs_dir": os.path.join(jobs, "flux-jobs")}

out = {"ranks": pwgen_worker.run_in_flux(job(num_tasks=2), ranks, 21)}
try:
    pwgen_worker.run_in_flux(job(num_tasks=2), broken)
except KeyError as err:
    out["raised"] = str(err)
out["bash"] = pwgen_worker.run_in_flux(job(num_tasks=2), pwgen_worker.run_bash, command,
                                      os.path.join(jobs, "ranks.txt"))
try:
    pwgen_worker.run_in_flux(job(cores_per_task=99), ranks, 1)
except Exception as err:
    out["unsatisfiable"] = f"{type(err).__name__}: {err}"
out["left"] = os.listdir(os.path.join(jobs, "flux-jobs"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def flux_command() -> str:
    return str(ensure_flux(str(flux_tarball())).prefix / "bin" / "flux")


@pytest.mark.lab
def test_run_in_flux_in_a_real_instance(tmp_path: Path, flux_command: str) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    argv = [flux_command, "start", sys.executable, str(driver), flux_command]
    done = subprocess.run(
        [*argv, str(WORKER_HELPERS.parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ranks"] == [42, "0", "2"]  # rank 0's result, of a 2-rank job
    assert out["raised"] == "'from the app'"
    assert out["bash"] == 0
    assert sorted((tmp_path / "ranks.txt").read_text().splitlines()) == [
        "rank 0 of 2",
        "rank 1 of 2",
    ]
    unsatisfiable = out["unsatisfiable"]
    assert unsatisfiable.startswith("AppException: flux run exited 1 without a result: ")
    assert "unsatisfiable request" in unsatisfiable and "\n" not in unsatisfiable
    assert out["left"] == []  # every job's files are removed


def test_run_in_flux_outside_an_instance(tmp_path: Path) -> None:
    sys.path.insert(0, str(WORKER_HELPERS.parent))
    try:
        import pwgen_worker
    finally:
        sys.path.pop(0)
    env = {key: value for key, value in os.environ.items() if key != "FLUX_URI"}
    job = {"num_tasks": 1, "flux": "/nonexistent/flux", "jobs_dir": str(tmp_path)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        with pytest.raises(Exception, match=r"no Flux instance here \(\$FLUX_URI unset\)"):
            pwgen_worker.run_in_flux(job, print)

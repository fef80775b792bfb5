"""Flux sites run site-side: their config, the shipping plan, the remote launcher, the run.

Flux itself is NOT run anywhere here: it is not in Debian or PyPI and the lab has no
conda channels, so no flux-core can be installed. What is tested instead:

- offline: the generated site-side config (FluxExecutor with flux_path and a shared
  working_dir, plain SlurmProvider with partition, walltime and worker_init) parses and
  builds its Parsl objects (no `flux` is ever run); the shipping plan (files, modes,
  remote paths) and the exact remote command lines; the shipped launcher and the whole
  `run_site_side` path on this machine, with `ssh` replaced by a local stand-in:
  output, exit codes, Ctrl-C/SIGTERM ending the remote process group, leftover Slurm
  jobs found and cancelled (fake squeue/scancel);
- lab (marked `lab`, root; prefix pwfl, 10.233.0.0/16, one provisioned site): the same
  path for real through the site's ssh master, with an injected ThreadPoolExecutor
  config instead of the Flux one: everything but Flux.
"""

import ast
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from facts_samples import COMPUTE, DEBUG, provisioned_facts
from lab_helpers import project_ssh, provisioned_lab, ssh, wait_for

import pwgen_script
from pwgen.configgen.flux import SRUN_OVERRIDES, flux_executor, render_flux_config
from pwgen.configgen.remote import ProvisionedSite, provisioned_site
from pwgen.errors import ConfigError, WorkflowError
from pwgen.flux import (
    CONFIG_NAME,
    RUNNER_NAME,
    SCRIPT_NAME,
    SiteRunError,
    SiteRunPlan,
    plan_site_run,
    run_site_side,
    site_run,
)
from pwgen.sites import Site, load_sites, parse_sites
from pwgen.ssh import SshSetup

HOME = "/home/fu"
ENV = f"{HOME}/.pwgen/envs/abc123"
RUN_ID = "20260101-120000-abcdef"
REMOTE_DIR = f"{HOME}/.pwgen/work/{RUN_ID}"

# A config that runs anywhere (no Flux): apps of label `lab1` run in threads.
THREADS_CONFIG = """\
from parsl.config import Config
from parsl.executors.threads import ThreadPoolExecutor

config = Config(executors=[ThreadPoolExecutor(label="lab1", max_threads=2)], run_dir="runinfo")
"""

WORKFLOW = """\
import os, socket, sys
from parsl import python_app

@python_app(executors=["lab1"])
def square(x):
    import socket
    return x * x, socket.gethostname()

for x in range(3):
    print("result", *square(x).result(), flush=True)
print("args", sys.argv[1:], flush=True)
print("path0", os.environ["PATH"].split(os.pathsep)[0], flush=True)
print("cwd", os.getcwd(), flush=True)
print("marker", os.environ.get("PWGEN_SITE_RUN"), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1:2] == ["exit"]:
    sys.exit(int(sys.argv[2]))
if sys.argv[1:2] == ["raise"]:
    raise RuntimeError("the workflow broke")
"""

# Waits in a bash app (a child process of the run) after leaving a Slurm job behind
# when there is a Slurm to submit to.
SLOW_WORKFLOW = """\
import shutil, subprocess
from parsl import bash_app

@bash_app(executors=["lab1"])
def nap():
    return "sleep 331"

if shutil.which("sbatch"):
    job = subprocess.run(["sbatch", "--parsable", "--wrap", "sleep 332"],
                         capture_output=True, text=True, check=True)
    print("job", job.stdout.strip(), flush=True)
future = nap()
print("started", flush=True)
future.result()
"""

# Runs `run_site_side` as `pwgen run` would, in a process of its own (its output and
# signals are the test's): python driver.py STATE_DIR SITES_FILE LABEL WORKFLOW ARGS...
DRIVER = """\
import sys
from pathlib import Path
from pwgen.flux import run_site_side
from pwgen.sites import load_sites
from pwgen.ssh import SshSetup

state, sites_file, label, workflow, *args = sys.argv[1:]
site = next(s for s in load_sites(Path(sites_file)) if s.label == label)
ssh_dir = Path(state) / "ssh"
ssh = SshSetup(config=ssh_dir / "config", known_hosts=ssh_dir / "known_hosts")
config = Path(__file__).with_name("threads_config.py").read_text()
sys.exit(run_site_side(site, Path(workflow), args, Path(state), ssh, config_text=config,
                       grace=20))
"""


def facts(workdir: str = f"{HOME}/.pwgen/work", env: str = ENV, python: str = "") -> dict[str, Any]:
    """A flux site's facts file as `pwgen provision` writes it: 16-CPU, 64 GiB nodes."""
    compute = {**COMPUTE, "cpus_per_node": 16, "memory_mb_per_node": 65536}
    data = provisioned_facts(
        "f1", home=HOME, env_dir=env, workdir=workdir, partitions=[compute, dict(DEBUG)]
    )
    if python:
        data["python"] = {"path": python, "version": "3.11.2"}
    return data


def write_state(state: Path, label: str, data: dict[str, Any]) -> None:
    (state / "facts").mkdir(parents=True, exist_ok=True)
    (state / "ssh").mkdir(exist_ok=True)
    (state / "ssh" / "config").write_text(f"Host {label}\n    HostName 192.0.2.1\n")
    (state / "ssh" / "known_hosts").write_text("")
    (state / "facts" / f"{label}.json").write_text(json.dumps(data))


def flux_site(extra: str = "") -> Site:
    text = f"sites:\n  - {{label: f1, scheduler: slurm, host: f1.example, executor: flux{extra}}}\n"
    return parse_sites(text, source="sites.yaml")[0]


@pytest.fixture
def provisioned(tmp_path: Path) -> ProvisionedSite:
    state = tmp_path / ".pwgen"
    write_state(state, "f1", facts())
    return provisioned_site(flux_site(), state)


# --- the generated site-side config ---------------------------------------------------


def test_flux_config_text(provisioned: ProvisionedSite) -> None:
    site = flux_site(", nodes_per_block: 2, account: proj7, worker_init: 'module load x'")
    source = render_flux_config(site, provisioned, remote_dir=REMOTE_DIR)
    ast.parse(source)
    assert "from parsl.executors import FluxExecutor\n" in source
    assert "from parsl.providers import SlurmProvider\n" in source
    assert "pwgen.providers" not in source and "SSH" not in source  # runs on the login node
    assert "site_f1 = FluxExecutor(\n    label='f1',\n    provider=SlurmProvider(\n" in source
    for line in (
        "        partition='compute',  # facts: default partition\n",
        "        account='proj7',  # sites.yaml\n",
        "        nodes_per_block=2,  # sites.yaml: the one Flux instance spans them\n",
        "        cores_per_node=16,  # facts: partition compute\n",
        "        mem_per_node=64,  # facts: 65536 MB per node in compute, in GB\n",
        f"        overrides={SRUN_OVERRIDES!r},\n",
        f"        worker_init='. {ENV}/bin/pwgen-activate\\nmodule load x',"
        "  # facts: env activation + sites.yaml\n",
        f"    flux_path='{ENV}/bin/flux',"
        "  # facts: flux-core in the pinned env (pwgen.hpc.flux role)\n",
        f"    working_dir='{REMOTE_DIR}/flux',  # facts: workdir, shared with the compute nodes\n",
        f"    run_dir='{REMOTE_DIR}/runinfo',\n",
    ):
        assert line in source, line
    # flux is found on PATH by Flux's client: the env's bin/ goes first.
    assert 'os.environ["PATH"] = sysconfig.get_path("scripts") + os.pathsep' in source


# Loads a config file in a fresh Python and prints what its objects hold.
INSPECT = """\
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("parsl_config", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.config
(executor,) = config.executors
provider = executor.provider
print(json.dumps({
    "executor": type(executor).__module__ + "." + type(executor).__name__,
    "label": executor.label,
    "flux_path": executor.flux_path,
    "working_dir": executor.working_dir,
    "run_dir": config.run_dir,
    "provider": type(provider).__module__ + "." + type(provider).__name__,
    "partition": provider.partition,
    "nodes_per_block": provider.nodes_per_block,
    "walltime": provider.walltime,
    "worker_init": provider.worker_init,
    "scheduler_options": provider.scheduler_options,
    "launcher": type(provider.launcher).__name__,
    "overrides": provider.launcher.overrides,
    "launch": provider.launcher("flux start python manager", 1, provider.nodes_per_block),
    "path0": os.environ["PATH"].split(os.pathsep)[0],
}), flush=True)
# A FluxExecutor that was never started fails in its weakref finalizer at exit (Parsl).
os._exit(0)
"""


def test_flux_config_builds_parsl_objects_without_running_flux(
    tmp_path: Path, provisioned: ProvisionedSite
) -> None:
    # Stand-ins record any call: building the config must run neither flux nor Slurm
    # (SlurmProvider probes `sacct` when built; it falls back to squeue when that fails).
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    for name in ("flux", "sacct", "squeue", "sbatch"):
        (fake / name).write_text(f'#!/bin/sh\necho {name} "$@" >> {calls}\nexit 1\n')
        (fake / name).chmod(0o755)
    site = flux_site(", partition: debug, nodes_per_block: 2")
    path = tmp_path / CONFIG_NAME
    path.write_text(render_flux_config(site, provisioned, remote_dir=REMOTE_DIR))
    done = subprocess.run(
        [sys.executable, "-c", INSPECT, str(path)],
        env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["executor"] == "parsl.executors.flux.executor.FluxExecutor"
    assert found["label"] == "f1"
    assert found["flux_path"] == f"{ENV}/bin/flux"
    assert found["working_dir"] == f"{REMOTE_DIR}/flux"
    assert found["run_dir"] == f"{REMOTE_DIR}/runinfo"
    assert found["provider"] == "parsl.providers.slurm.slurm.SlurmProvider"
    assert found["partition"] == "debug" and found["nodes_per_block"] == 2
    assert found["walltime"] == "00:30:00"  # the default 01:00:00, clamped to debug's limit
    assert found["worker_init"].strip() == f". {ENV}/bin/pwgen-activate"
    assert "#SBATCH --partition=debug" in found["scheduler_options"]
    assert found["launcher"] == "SrunLauncher" and found["overrides"] == SRUN_OVERRIDES
    assert f"srun --ntasks 2 -l {SRUN_OVERRIDES} bash" in found["launch"]
    assert found["path0"] == str(Path(sys.executable).parent)  # this Python's scripts dir
    assert "flux" not in (calls.read_text() if calls.exists() else "")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", partition: gpu", r"partition 'gpu' is not on the site \(partitions: compute, debug\)"),
        (", partition: debug, walltime: '02:00:00'", "exceeds the debug partition's limit"),
    ],
)
def test_flux_config_refusals(provisioned: ProvisionedSite, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flux_executor(flux_site(extra), provisioned, remote_dir=REMOTE_DIR)


def test_only_slurm_flux_sites(provisioned: ProvisionedSite) -> None:
    htex = flux_site().model_copy(update={"executor": "htex"})
    with pytest.raises(ConfigError, match="uses executor htex, not flux"):
        flux_executor(htex, provisioned, remote_dir=REMOTE_DIR)
    pbs = flux_site().model_copy(update={"scheduler": "pbspro"})
    with pytest.raises(ConfigError, match="Flux sites on Slurm clusters only"):
        flux_executor(pbs, provisioned, remote_dir=REMOTE_DIR)


# --- the shipping plan and the remote command lines -----------------------------------


def make_plan(tmp_path: Path, provisioned: ProvisionedSite, **kwargs: Any) -> SiteRunPlan:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    workflow = project / "flow.py"
    workflow.write_text("print('hello')\n")
    return plan_site_run(
        flux_site(),
        workflow,
        ["--n", "3", "it's a b"],
        provisioned,
        RUN_ID,
        **kwargs,
    )


def test_plan_files_modes_and_paths(tmp_path: Path, provisioned: ProvisionedSite) -> None:
    plan = make_plan(tmp_path, provisioned)
    assert plan.remote_dir == REMOTE_DIR
    assert plan.python == f"{ENV}/bin/python"
    assert [(f.name, oct(f.mode)) for f in plan.files] == [
        ("flow.py", "0o600"),
        (CONFIG_NAME, "0o600"),
        (RUNNER_NAME, "0o600"),
        (SCRIPT_NAME, "0o600"),
    ]
    config = next(f for f in plan.files if f.name == CONFIG_NAME).data.decode()
    assert f"working_dir='{REMOTE_DIR}/flux'" in config
    with tarfile.open(fileobj=io.BytesIO(plan.tarball())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"flow.py", CONFIG_NAME, RUNNER_NAME, SCRIPT_NAME}
        assert all(m.isfile() and m.mode == 0o600 for m in members.values())
        # The launcher and the module it imports are pwgen's own source files, as they are.
        for name, module in ((RUNNER_NAME, site_run), (SCRIPT_NAME, pwgen_script)):
            shipped = tar.extractfile(members[name])
            assert shipped is not None
            assert shipped.read() == Path(module.__file__).read_bytes()


def test_remote_command_lines(tmp_path: Path, provisioned: ProvisionedSite) -> None:
    plan = make_plan(tmp_path, provisioned)
    assert plan.ship_command() == (
        f"umask 077 && mkdir -p {HOME}/.pwgen/work && mkdir -m 0700 {REMOTE_DIR} && "
        f"tar -x --no-same-owner -f - -C {REMOTE_DIR}"
    )
    assert plan.run_command() == (
        f"cd {REMOTE_DIR} && exec setsid -w env PWGEN_SITE_RUN={RUN_ID} {ENV}/bin/python -u "
        "pwgen_site_run.py flow.py --n 3 'it'\"'\"'s a b'"
    )
    assert plan.signal_command("TERM") == (
        f"cd {REMOTE_DIR} && {ENV}/bin/python pwgen_site_run.py --signal TERM"
    )
    assert (
        plan.cleanup_command() == f"cd {REMOTE_DIR} && {ENV}/bin/python pwgen_site_run.py --cleanup"
    )
    # The remote shell gets back exactly the argv pwgen meant.
    words = shlex.split(plan.run_command().split(" && ", 1)[1])
    assert words[-4:] == ["flow.py", "--n", "3", "it's a b"]
    ssh = SshSetup(config=Path("/p/.pwgen/ssh/config"), known_hosts=Path("/p/kh"))
    assert ssh.argv("f1", plan.run_command()) == [
        *["ssh", "-F", "/p/.pwgen/ssh/config", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"],
        *["-T", "f1", "--", plan.run_command()],
    ]


def test_paths_with_spaces_are_quoted(tmp_path: Path) -> None:
    state = tmp_path / ".pwgen"
    write_state(state, "f1", facts(workdir="/scratch/my work", env="/opt/my env"))
    plan = make_plan(tmp_path, provisioned_site(flux_site(), state))
    assert plan.ship_command().startswith("umask 077 && mkdir -p '/scratch/my work' && ")
    assert plan.run_command().startswith(
        f"cd '/scratch/my work/{RUN_ID}' && exec setsid -w env PWGEN_SITE_RUN={RUN_ID} "
        "'/opt/my env/bin/python' -u"
    )


def test_extra_files_ship_beside_the_workflow(tmp_path: Path, provisioned: ProvisionedSite) -> None:
    project = tmp_path / "project"
    (project / "lib" / "__pycache__").mkdir(parents=True)
    (project / "lib" / "__init__.py").write_text("")
    (project / "lib" / "helpers.py").write_text("X = 1\n")
    (project / "lib" / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"")
    (project / "run.sh").write_text("#!/bin/sh\n")
    (project / "run.sh").chmod(0o755)
    plan = make_plan(tmp_path, provisioned, extra_files=[project / "lib", project / "run.sh"])
    shipped = {f.name: oct(f.mode) for f in plan.files}
    assert shipped == {
        "flow.py": "0o600",
        CONFIG_NAME: "0o600",
        RUNNER_NAME: "0o600",
        SCRIPT_NAME: "0o600",
        "lib/__init__.py": "0o600",
        "lib/helpers.py": "0o600",
        "run.sh": "0o700",
    }
    with tarfile.open(fileobj=io.BytesIO(plan.tarball())) as tar:
        lib = tar.getmember("lib")
        assert lib.isdir() and lib.mode == 0o700


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("outside", "must be under the workflow's directory"),
        ("missing.py", "extra file not found"),
        ("parsl_config.py", "keeps the name parsl_config.py for itself"),
    ],
)
def test_extra_file_refusals(
    tmp_path: Path, provisioned: ProvisionedSite, name: str, message: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside").write_text("")
    (project / "parsl_config.py").write_text("")
    item = tmp_path / name if name == "outside" else project / name
    with pytest.raises(WorkflowError, match=message):
        make_plan(tmp_path, provisioned, extra_files=[item])


@pytest.mark.parametrize("name", [RUNNER_NAME, SCRIPT_NAME])
def test_workflow_may_not_take_a_reserved_name(
    tmp_path: Path, provisioned: ProvisionedSite, name: str
) -> None:
    workflow = tmp_path / name
    workflow.write_text("")
    with pytest.raises(WorkflowError, match=f"keeps the name {name} for itself"):
        plan_site_run(flux_site(), workflow, [], provisioned, RUN_ID)


# --- the whole path on this machine, ssh replaced by a local stand-in -----------------

FAKE_SSH = """\
#!/bin/sh
# Stands in for ssh: the last argument is the remote command; it runs here. `-O` (master
# control) succeeds.
for arg; do last=$arg; done
case " $* " in *" -O "*) exit 0;; esac
echo "$*" >> "$FAKE_LOG"
exec sh -c "$last"
"""

# A Slurm stand-in: squeue lists one job submitted from the run directory, one whose
# script lives in it, and one of another run; scancel records what it was asked.
FAKE_SQUEUE = """\
#!/bin/sh
echo "$*" >> "$FAKE_LOG"
echo "501|$(pwd -P)|(null)"
echo "502|/elsewhere|$PWD/flux/parsl.slurm.17.sh"
echo "503|/elsewhere|/elsewhere/other-run/script.sh"
"""
FAKE_SCANCEL = '#!/bin/sh\necho "scancel $*" >> "$FAKE_LOG"\n'
FAKE_SBATCH = "#!/bin/sh\necho 501\n"


def write_project(project: Path) -> None:
    """The driver, its threads config and the workflows the tests run."""
    (project / "driver.py").write_text(DRIVER)
    (project / "threads_config.py").write_text(THREADS_CONFIG)
    (project / "flow.py").write_text(WORKFLOW)
    (project / "slow.py").write_text(SLOW_WORKFLOW)


@dataclass
class DrivenProject:
    """A project whose driver.py runs workflows on its flux site `label` (see DRIVER)."""

    project: Path
    state: Path
    sites_file: Path
    label: str
    env: dict[str, str] | None

    def argv(self, workflow: str, *args: str) -> list[str]:
        driver = str(self.project / "driver.py")
        sites = str(self.sites_file)
        return [sys.executable, driver, str(self.state), sites, self.label, workflow, *args]

    def run(
        self, workflow: str, *args: str, timeout: float = 120
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            self.argv(workflow, *args),
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def started(self, workflow: str) -> "Iterator[subprocess.Popen[str]]":
        """The driver running `workflow`, its output piped; killed if still running after."""
        proc = subprocess.Popen(
            self.argv(workflow),
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@dataclass
class LocalSite(DrivenProject):
    """A flux site whose 'login node' is this machine, reached through the fake ssh."""

    workdir: Path
    log: Path

    def run_dirs(self) -> list[Path]:
        return sorted(self.workdir.iterdir())


@pytest.fixture
def local_site(tmp_path: Path) -> LocalSite:
    project = tmp_path / "project"
    project.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {"ssh": FAKE_SSH, "squeue": FAKE_SQUEUE, "scancel": FAKE_SCANCEL, "sbatch": FAKE_SBATCH}
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    workdir = tmp_path / "site" / "work"
    env_root = str(Path(sys.executable).parent.parent)
    state = project / ".pwgen"
    write_state(state, "f1", facts(workdir=str(workdir), env=env_root, python=sys.executable))
    sites_file = project / "sites.yaml"
    sites_file.write_text(
        "sites:\n  - {label: f1, scheduler: slurm, host: f1.example, executor: flux}\n"
    )
    write_project(project)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)}
    return LocalSite(project, state, sites_file, "f1", env, workdir, log)


def test_local_run_streams_output_and_keeps_the_run(local_site: LocalSite) -> None:
    done = local_site.run("flow.py", "a", "b c")
    assert done.returncode == 0, done.stderr
    results = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("result")]
    assert results == ["0", "1", "4"]
    assert "args ['a', 'b c']" in done.stdout
    (run_dir,) = local_site.run_dirs()
    assert f"cwd {run_dir}" in done.stdout
    assert f"marker {run_dir.name}" in done.stdout
    assert f"path0 {Path(sys.executable).parent}" in done.stdout  # the env's bin/ first
    assert "to stderr" in done.stderr
    assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in run_dir.iterdir() if p.is_file()}
    assert modes["flow.py"] == modes[CONFIG_NAME] == modes[RUNNER_NAME] == "0o600"
    log = local_site.log.read_text()
    assert f"-T f1 -- cd {run_dir} && exec setsid -w env PWGEN_SITE_RUN={run_dir.name}" in log
    assert f"-T f1 -- cd {run_dir} && {sys.executable} pwgen_site_run.py --cleanup" in log
    # The leftover jobs of this run (by its directory and by its script path) are cancelled.
    assert "scancel 501 502\n" in log
    (manifest_dir,) = (local_site.state / "runs").iterdir()
    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    assert manifest_dir.name == run_dir.name == manifest["run_id"]
    assert manifest["exit_code"] == 0
    assert manifest["site_side"]["remote_dir"] == str(run_dir)
    assert {"preflight", "ship", "workflow", "cleanup"} <= set(manifest["timings"])
    assert (manifest_dir / CONFIG_NAME).read_text() == THREADS_CONFIG


#: The workflow's own exit code, and a raise (exit 1): what a run of flow.py ARGS gives.
exit_cases = pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("exit", "3"), 3, "args ['exit', '3']"),
        (("raise",), 1, "RuntimeError: the workflow broke"),
    ],
)


@exit_cases
def test_local_run_exit_codes(
    local_site: LocalSite, args: tuple[str, ...], code: int, needle: str
) -> None:
    done = local_site.run("flow.py", *args)
    assert done.returncode == code, done.stderr
    assert needle in done.stdout + done.stderr
    if code == 1:
        assert "pwgen-site: workflow flow.py failed" in done.stderr
        # The workflow's frames only.
        assert RUNNER_NAME not in done.stderr and SCRIPT_NAME not in done.stderr


def test_local_run_config_that_does_not_load(local_site: LocalSite) -> None:
    (local_site.project / "threads_config.py").write_text("config = undefined_name\n")
    done = local_site.run("flow.py")
    assert done.returncode == 2
    assert "pwgen-site: cannot load parsl_config.py: NameError" in done.stderr


def test_local_run_that_cannot_be_shipped(
    local_site: LocalSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads((local_site.state / "facts" / "f1.json").read_text())
    write_state(local_site.state, "f1", {**data, "workdir": "/proc/no-such-dir"})
    for key in ("PATH", "FAKE_LOG"):
        monkeypatch.setenv(key, local_site.env[key])
    site = load_sites(local_site.sites_file)[0]
    ssh = SshSetup(local_site.state / "ssh" / "config", local_site.state / "ssh" / "known_hosts")
    with pytest.raises(SiteRunError, match=r"cannot ship the run to /proc/no-such-dir/\S+: mkdir"):
        run_site_side(
            site, local_site.project / "flow.py", [], local_site.state, ssh, config_text="x"
        )
    (run,) = (local_site.state / "runs").iterdir()
    assert json.loads((run / "manifest.json").read_text())["exit_code"] == 2
    assert "--cleanup" not in local_site.log.read_text()  # nothing was started


def marked_processes(run_id: str) -> list[str]:
    """Live processes here that carry a run's marker."""
    found = []
    for proc in psutil.process_iter(["status", "cmdline"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("PWGEN_SITE_RUN") == run_id:
                found.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_local_interrupt_ends_the_remote_process_group(
    local_site: LocalSite, signum: signal.Signals
) -> None:
    with local_site.started("slow.py") as proc:
        assert proc.stdout is not None
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["job 501", "started"]
        (run_dir,) = local_site.run_dirs()
        assert wait_for(lambda: any("sleep 331" in p for p in marked_processes(run_dir.name)))
        clock = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - clock < 15
    assert "pwgen: interrupted; stopping the run on f1" in stderr
    assert "pwgen-site: interrupted; cleaning up" in stderr  # the remote teardown, streamed
    assert wait_for(lambda: marked_processes(run_dir.name) == [], timeout=5)
    assert "scancel 501 502\n" in local_site.log.read_text()


# --- the lab: the same path for real, through the site's ssh master -------------------

PREFIX, SUBNET = "pwfl", "10.233.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-flux-lab"


@dataclass
class LabSite(DrivenProject):
    user: str

    def on_site(self, command: str) -> str:
        """A command on the login node through the lab's own ssh config (not the run's)."""
        return ssh(LAB_DIR, self.label, command)

    def master_running(self) -> bool:
        return project_ssh(self.project).master_running(self.label)

    def leftovers(self) -> str:
        """The site user's run processes and Slurm jobs ('' when there are none)."""
        # The lab's nodes share this machine's process table: -u picks the site user's.
        return self.on_site(
            f"pgrep -u {self.user} -af 'pwgen_site_run|sleep 33[12]' | grep -v pgrep; squeue -h"
        )


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSite]:
    project = tmp_path_factory.mktemp("flux-project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, project, sites=1, compute_nodes=1) as state:
        write_project(project)
        sites = LAB_DIR / "sites.yaml"
        yield LabSite(project, project / ".pwgen", sites, "lab1", None, state.sites[0].user)


@pytest.mark.lab
def test_lab_run_streams_back_from_the_login_node(lab_site: LabSite) -> None:
    done = lab_site.run("flow.py", "a", "b c")
    assert done.returncode == 0, done.stderr
    for x in range(3):
        assert f"result {x * x} lab1-login" in done.stdout  # ran on the login node
    assert "args ['a', 'b c']" in done.stdout
    facts = json.loads((lab_site.project / ".pwgen/facts/lab1.json").read_text())
    assert f"path0 {facts['env_path']}/bin" in done.stdout
    assert "to stderr" in done.stderr
    runs = lab_site.project / ".pwgen" / "runs"
    manifest_dir = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    remote_dir = manifest["site_side"]["remote_dir"]
    assert remote_dir == f"{facts['workdir']}/{manifest['run_id']}"
    assert f"cwd {remote_dir}" in done.stdout
    modes = lab_site.on_site(
        f"cd {remote_dir} && stat -c '%a %U %n' . flow.py {CONFIG_NAME} {RUNNER_NAME}"
    )
    assert modes.split("\n")[:4] == [
        f"700 {lab_site.user} .",
        f"600 {lab_site.user} flow.py",
        f"600 {lab_site.user} {CONFIG_NAME}",
        f"600 {lab_site.user} {RUNNER_NAME}",
    ]
    assert manifest["exit_code"] == 0
    assert manifest["site_versions"]["lab1"][0] == facts["parsl_version"]
    assert not lab_site.master_running()
    assert lab_site.leftovers() == ""


@pytest.mark.lab
@exit_cases
def test_lab_exit_codes_propagate(
    lab_site: LabSite, args: tuple[str, ...], code: int, needle: str
) -> None:
    done = lab_site.run("flow.py", *args)
    assert done.returncode == code, done.stderr
    assert needle in done.stdout + done.stderr


@pytest.mark.lab
def test_lab_ctrl_c_kills_the_remote_process_group(lab_site: LabSite) -> None:
    with lab_site.started("slow.py") as proc:
        assert proc.stdout is not None
        job = proc.stdout.readline().split()
        assert job[0] == "job", job
        assert proc.stdout.readline().strip() == "started"
        running = lab_site.on_site(f"pgrep -u {lab_site.user} -af 'pwgen_site_run|sleep 331'")
        assert "pwgen_site_run.py slow.py" in running and "sleep 331" in running, running
        assert job[1] in lab_site.on_site("squeue -h -o %i")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "pwgen-site: interrupted; cleaning up" in stderr
    assert f"pwgen-site: cancelled Slurm jobs {job[1]}" in stderr
    assert wait_for(lambda: lab_site.leftovers() == "", timeout=10), lab_site.leftovers()
    assert not lab_site.master_running()


@pytest.mark.parametrize(
    ("module", "allowed"), [(site_run, {"parsl", "pwgen_script"}), (pwgen_script, set())]
)
def test_shipped_launcher_needs_no_pwgen(module: Any, allowed: set[str]) -> None:
    # Shipped as is to sites without pwgen: the standard library, parsl (lazily) and the
    # module shipped beside the launcher only.
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported - set(sys.stdlib_module_names) == allowed

"""Generated configs for remote sites, and pwgen's site executors, offline and on the lab.

Offline: the generated module for Slurm, PBS Pro, MPI and Flux sites from facts written
by hand (its text, provenance comments, and the objects it builds with the ssh calls
recorded), the errors for missing or contradicting facts, the executors' Parsl
`RepresentationMixin` convention and argument checks, and the certificate bundle.

Lab (marked `lab`, root): 2 provisioned Slurm sites x 2 compute nodes (prefix pwtm,
10.247.0.0/16). `pwgen config` writes parsl_config.py; a fresh Python imports it and
runs plain `parsl.load(config)` + apps on both sites + `dfk.cleanup()`; afterwards
nothing runs on either side. An `mpi` site runs an MPI-style `srun` over 2 nodes.
"""

import ast
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from facts_samples import provisioned_facts
from helpers import Recorder, run_pwgen
from lab_helpers import master_running, netns_processes, project_ssh, provisioned_lab, ssh, wait_for
from parsl import curvezmq
from parsl.errors import ConfigurationError
from parsl.launchers import MpiExecLauncher, SimpleLauncher, SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider
from parsl.utils import RepresentationMixin

from pwgen.configgen import load_config_module, render_config
from pwgen.errors import ConfigError
from pwgen.executors import SiteHighThroughputExecutor, SiteMPIExecutor, certificate_bundle
from pwgen.facts import read_facts
from pwgen.lab.procs import alive
from pwgen.lab.state import LabState
from pwgen.providers import SSHPBSProProvider, SSHSlurmProvider
from pwgen.sites import Site, parse_sites
from pwgen.staging import SiteFileStaging

PREFIX, SUBNET = "pwtm", "10.247.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwtm-lab"

# --- offline: facts written by hand ---------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A provisioned-looking state dir: facts for s1 (slurm) and p1 (pbspro), ssh config."""
    state = tmp_path / "project" / ".pwgen"
    (state / "facts").mkdir(parents=True)
    (state / "ssh").mkdir()
    (state / "ssh" / "config").write_text("Host s1 p1\n    HostName 192.0.2.1\n")
    for label, scheduler in (("s1", "slurm"), ("p1", "pbspro")):
        (state / "facts" / f"{label}.json").write_text(
            json.dumps(provisioned_facts(label, scheduler=scheduler))
        )
    return state


def configure(project: Path, sites_yaml: str) -> None:
    """`pwgen config -o parsl_config.py` in `project` for these sites."""
    (project / "sites.yaml").write_text(sites_yaml)
    done = run_pwgen("config", "-o", "parsl_config.py", cwd=project)
    assert done.returncode == 0, done.stderr


def sites(text: str) -> list[Site]:
    return parse_sites(textwrap.dedent(text), source="sites.yaml")


def load(tmp_path: Path, source: str) -> Any:
    path = tmp_path / "parsl_config.py"
    path.write_text(source)
    return load_config_module(path).config


def test_slurm_site_from_facts(tmp_path: Path, state_dir: Path, recorder: Recorder) -> None:
    chosen = sites(
        """\
        sites:
          - {label: s1, scheduler: slurm, host: s1.example, nodes_per_block: 2,
             max_blocks: 3, account: proj7, worker_init: ["module load gcc"]}
        """
    )
    source = render_config(chosen, source="my/sites.yaml", state_dir=state_dir)
    ast.parse(source)
    # Readable: where values came from, the absolute ssh config, the facts file.
    ssh_config = str((state_dir / "ssh" / "config").resolve())
    assert f"SSH_CONFIG = {ssh_config!r}" in source
    assert f"#   facts: {(state_dir / 'facts' / 's1.json').resolve()}" in source
    assert "partition='compute',  # facts: default partition" in source
    assert "cores_per_node=8,  # facts: partition compute" in source
    assert "nodes_per_block=2,  # sites.yaml" in source
    assert "init_blocks=1,  # default" in source
    assert "launcher=SrunLauncher(),  # a pool on every node of the block" in source
    assert "internal_address='10.9.1.1',  # facts:" in source
    assert "ssh_config=SSH_CONFIG," in source
    assert "    storage_access=[\n        SiteFileStaging(),\n        SiteZipStaging(),\n" in source

    config = load(tmp_path, source)
    (executor,) = config.executors
    assert type(executor) is SiteHighThroughputExecutor and executor.label == "s1"
    assert (executor.address, executor.encrypted) == ("127.0.0.1", True)
    assert executor.ssh_config == ssh_config and executor.host == "s1"
    assert executor.relay == "/home/s1u/.pwgen/envs/abc123/bin/pwgen-relay"
    assert executor.remote_dir == "/home/s1u/.pwgen/work"
    provider = executor.provider
    assert type(provider) is SSHSlurmProvider and isinstance(provider.launcher, SrunLauncher)
    assert (provider.partition, provider.account, provider.nodes_per_block) == (
        "compute",
        "proj7",
        2,
    )
    assert (provider.cores_per_node, provider.mem_per_node) == (8, 16)
    assert (provider.max_blocks, provider.walltime, provider.cmd_timeout) == (3, "01:00:00", 30)
    assert provider.worker_init.strip() == (
        ". /home/s1u/.pwgen/envs/abc123/bin/pwgen-activate\nmodule load gcc"
    )
    assert provider.remote_script_dir == "/home/s1u/.pwgen/work/scripts"
    # Files: file:// by rsync from here, the rest in the task (docs/staging.md).
    assert [type(s).__name__ for s in executor.storage_access] == [
        "SiteFileStaging",
        "SiteZipStaging",
        "HTTPInTaskStaging",
        "FTPInTaskStaging",
        "CloudStaging",
        "UnsupportedStaging",
    ]
    # Building the provider contacted the site (recorded): mkdir, then Slurm's probe.
    assert recorder.commands()[0].endswith("mkdir -p -- /home/s1u/.pwgen/work/scripts")
    assert recorder.commands()[1].startswith("sacct -X")


def test_one_node_blocks_and_partition_limits(
    tmp_path: Path, state_dir: Path, recorder: Recorder
) -> None:
    chosen = sites(
        """\
        sites:
          - {label: s1, scheduler: slurm, host: h, partition: debug}
        """
    )
    source = render_config(chosen, source="sites.yaml", state_dir=state_dir)
    # The default walltime (1 h) does not fit the debug partition: clamped, and said so.
    assert "walltime='00:30:00',  # facts: the default 01:00:00 clamped" in source
    assert "mem_per_node" not in source  # 800 MB per node: less than Slurm's 1 GB unit
    provider = load(tmp_path, source).executors[0].provider
    assert isinstance(provider.launcher, SingleNodeLauncher)
    assert (provider.partition, provider.cores_per_node) == ("debug", 4)

    explicit = sites(
        "sites:\n  - {label: s1, scheduler: slurm, host: h, partition: debug, walltime: '02:00:00'}"
    )
    with pytest.raises(ConfigError, match="walltime 02:00:00 exceeds the debug partition"):
        render_config(explicit, source="sites.yaml", state_dir=state_dir)


def test_site_batch_options_reach_the_providers(
    tmp_path: Path, state_dir: Path, recorder: Recorder
) -> None:
    chosen = sites(
        """\
        sites:
          - label: s1
            scheduler: slurm
            host: h
            constraint: "skylake&ib"
            gres: "gpu:a100:2"
            gpus_per_node: 2
            mem_per_node: 64
            exclusive: false
            scheduler_options: ["#SBATCH --mail-type=END", "#SBATCH --comment='x; y'"]
          - label: p1
            scheduler: pbspro
            host: h
            gpus_per_node: 1
            mem_per_node: 32
            scheduler_options: "#PBS -m e"
        """
    )
    source = render_config(chosen, source="sites.yaml", state_dir=state_dir)
    assert "mem_per_node=64,  # sites.yaml" in source  # the site's own beats the facts'
    slurm, pbs = load(tmp_path, source).executors
    provider = slurm.provider
    assert (provider.constraint, provider.gres, provider.gpus_per_node) == (
        "skylake&ib",
        "gpu:a100:2",
        2,
    )
    assert (provider.mem_per_node, provider.exclusive) == (64, False)
    # Parsl's SlurmProvider appends its own directives after the site's.
    assert provider.scheduler_options.startswith(
        "#SBATCH --mail-type=END\n#SBATCH --comment='x; y'\n"
    )
    assert pbs.provider.select_options == "ngpus=1:mem=32gb"
    assert pbs.provider.scheduler_options == "#PBS -m e"


def test_pbspro_and_mpi_sites(tmp_path: Path, state_dir: Path, recorder: Recorder) -> None:
    chosen = sites(
        """\
        sites:
          - {label: p1, scheduler: pbspro, host: h, nodes_per_block: 2, account: a1}
          - {label: s1, scheduler: slurm, host: h, executor: mpi, nodes_per_block: 4,
             max_workers_per_node: 2}
        """
    )
    source = render_config(chosen, source="sites.yaml", state_dir=state_dir)
    assert "queue='compute',  # facts: default partition" in source
    assert "cpus_per_node=8,  # facts: queue compute" in source
    pbs, mpi = load(tmp_path, source).executors
    assert type(pbs) is SiteHighThroughputExecutor
    assert type(pbs.provider) is SSHPBSProProvider
    assert isinstance(pbs.provider.launcher, MpiExecLauncher)
    # Two chunks of a block on two nodes, whatever the nodes' cpus.
    assert pbs.provider.scheduler_options == "#PBS -l place=scatter"
    assert (pbs.provider.queue, pbs.provider.account, pbs.provider.cpus_per_node) == (
        "compute",
        "a1",
        8,
    )
    assert type(mpi) is SiteMPIExecutor and mpi.enable_mpi_mode
    assert isinstance(mpi.storage_access[0], SiteFileStaging)
    assert (mpi.mpi_launcher, mpi.max_workers_per_block, mpi.encrypted) == ("srun", 2, True)
    assert isinstance(mpi.provider.launcher, SimpleLauncher)

    pbs_mpi = sites(
        "sites:\n  - {label: p1, scheduler: pbspro, host: h, executor: mpi, nodes_per_block: 3}"
    )
    pbs_mpi_source = render_config(pbs_mpi, source="sites.yaml", state_dir=state_dir)
    assert "mpi_launcher='mpiexec'" in pbs_mpi_source
    # Without max_workers_per_node: as many MPI apps at once as the block has nodes.
    assert "max_workers_per_block=3,  # default: nodes_per_block" in pbs_mpi_source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{label: p1, scheduler: pbspro, host: h, executor: flux}",
            r"site 'p1': pwgen runs Flux sites on Slurm clusters only \(this one is pbspro\)",
        ),
        (
            "{label: s9, scheduler: slurm, host: h}",
            r"site 's9' \(slurm\): no facts gathered for it yet \(.*s9.json\); "
            r"run `pwgen provision` first",
        ),
        (
            "{label: s1, scheduler: pbspro, host: h}",
            r"s1.json: site 's1' is pbspro in the sites file but the facts say slurm",
        ),
        (
            "{label: s1, scheduler: slurm, host: h, partition: gpu}",
            r"site 's1': partition 'gpu' is not on the site \(partitions: compute, debug\)",
        ),
        (
            "{label: p1, scheduler: pbspro, host: h, qos: high}",
            r"site 'p1': qos is a Slurm setting",
        ),
    ],
)
def test_refused_sites_are_one_line_errors(state_dir: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        render_config(sites(f"sites:\n  - {text}\n"), source="sites.yaml", state_dir=state_dir)
    assert "\n" not in str(caught.value)


def test_missing_ssh_config_or_relay(state_dir: Path) -> None:
    facts = json.loads((state_dir / "facts" / "s1.json").read_text())
    (state_dir / "facts" / "s1.json").write_text(json.dumps({**facts, "relay": None}))
    one = sites("sites:\n  - {label: s1, scheduler: slurm, host: h}")
    with pytest.raises(ConfigError, match=r"no relay for site 's1'.*provision"):
        render_config(one, source="sites.yaml", state_dir=state_dir)
    (state_dir / "ssh" / "config").unlink()
    with pytest.raises(ConfigError, match=r"ssh/config: no ssh config .* `pwgen provision` first"):
        render_config(one, source="sites.yaml", state_dir=state_dir)


def test_pwgen_config_uses_the_project_state_dir(state_dir: Path) -> None:
    project = state_dir.parent
    configure(project, "sites:\n  - {label: s1, scheduler: slurm, host: h}\n")
    text = (project / "parsl_config.py").read_text()
    assert f"SSH_CONFIG = '{state_dir.resolve()}/ssh/config'" in text
    assert "site_s1 = SiteHighThroughputExecutor(" in text


# --- offline: the executors -----------------------------------------------------------


def site_args(ssh_config: str) -> dict[str, Any]:
    return {
        "ssh_config": ssh_config,
        "host": "site",
        "internal_address": "10.1.1.1",
        "relay": "/opt/env/bin/pwgen-relay",
        "remote_dir": "/home/u/.pwgen/work",
    }


@pytest.mark.parametrize("cls", [SiteHighThroughputExecutor, SiteMPIExecutor])
def test_representation_mixin(
    cls: type[SiteHighThroughputExecutor], ssh_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsl's convention: every constructor argument is an attribute of the same name."""
    provider = LocalProvider(launcher=SimpleLauncher())
    executor = cls(label="x", provider=provider, tunnel_check_interval=3.5, **site_args(ssh_config))
    monkeypatch.setattr(RepresentationMixin, "_validate_repr", True)  # as Parsl's own tests
    text = repr(executor)
    spec = inspect.getfullargspec(cls.__init__)
    for name in spec.args[1:] + spec.kwonlyargs:
        assert hasattr(executor, name), name
        assert f"{name}=" in text, name
    assert "<unrecorded>" not in text
    assert "internal_address='10.1.1.1'" in text and "tunnel_check_interval=3.5" in text
    assert "remote_dir='/home/u/.pwgen/work'" in text
    assert executor.encrypted is True and executor.address == "127.0.0.1"
    # Same names, order and defaults as the Parsl parent, plus the site arguments.
    parent = inspect.signature(cls.__mro__[2].__init__)  # HighThroughputExecutor / MPIExecutor
    ours = inspect.signature(cls.__init__)
    shared = [p for p in ours.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in shared] == [
        p.name for p in parent.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    for param in shared:
        default = parent.parameters[param.name].default
        if param.name == "manager_selector":  # an instance: the same class will do
            assert type(param.default) is type(default)
        elif param.name not in ("address", "encrypted"):
            assert param.default == default, param.name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"address": "localhost"}, "loopback IP literal"),
        ({"address": "10.0.0.5"}, "loopback IP literal"),
        ({"internal_address": "login1"}, "expected the login node's IP address"),
        ({"remote_dir": "~/work"}, "must be an absolute path"),
        ({"relay": "pwgen-relay"}, "must be an absolute path"),
        ({"ssh_config": "/nonexistent"}, "no such file"),
    ],
)
def test_executor_argument_checks(ssh_config: str, changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SiteHighThroughputExecutor(provider=LocalProvider(), **{**site_args(ssh_config), **changes})
    SiteHighThroughputExecutor(provider=LocalProvider(), address="::1", **site_args(ssh_config))


def test_certificate_bundle_has_no_server_secret(tmp_path: Path) -> None:
    cert_dir = curvezmq.create_certificates(tmp_path)
    with tarfile.open(fileobj=BytesIO(certificate_bundle(cert_dir))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "client.key",
            "client.key_secret",
            "server.key",
            "server.key_secret",
        ]
        assert {m.mode for m in members.values()} == {0o600}
        shipped = tmp_path / "shipped"
        tar.extractall(shipped, filter="data")
    for name in ("client.key", "client.key_secret", "server.key"):
        assert (shipped / name).read_bytes() == (Path(cert_dir) / name).read_bytes()
    real_public, real_secret = zmq.auth.load_certificate(Path(cert_dir) / "server.key_secret")
    public, secret = zmq.auth.load_certificate(shipped / "server.key_secret")
    assert public == real_public and secret is not None and secret != real_secret


# --- lab ------------------------------------------------------------------------------

DRIVER = '''
"""Run in a fresh Python: plain Parsl with the generated module, step by step."""
import concurrent.futures, json, os, sys, time
start = time.monotonic()
import parsl
from parsl import python_app
sys.path.insert(0, os.getcwd())
from parsl_config import SSH_CONFIG, config
imported = time.monotonic()


def step(name, **data):
    print(json.dumps({"step": name, **data}), flush=True)
    if name != "done":
        sys.stdin.readline()  # the test looks around, then says go on


def where(x):
    import socket
    return socket.gethostname(), x * x


def noop():
    return None


def rate(app, tasks=2000, rounds=3):
    """Median no-op tasks/s over `rounds` rounds of `tasks` tasks."""
    app().result()
    found = []
    for _ in range(rounds):
        t = time.monotonic()
        for future in [app() for _ in range(tasks)]:
            future.result()
        found.append(tasks / (time.monotonic() - t))
    return sorted(found)[len(found) // 2]


dfk = parsl.load(config)
loaded = time.monotonic()
labels = [e.label for e in config.executors]
futures = {label: [python_app(executors=[label])(where)(i) for i in range(20)] for label in labels}
every = [f for fs in futures.values() for f in fs]
concurrent.futures.wait(every, return_when=concurrent.futures.FIRST_COMPLETED)
first = time.monotonic()
results = {label: [f.result() for f in fs] for label, fs in futures.items()}
site_rate = rate(python_app(executors=["lab2"])(noop))
executors = {
    e.label: {"encrypted": e.encrypted, "launch_cmd": e.launch_cmd, "cert_dir": e.cert_dir,
              "remote_cert_dir": e.remote_cert_dir, "remote_run_dir": e.remote_run_dir,
              "port": e.worker_port, "master": e.tunnel.master_pid()}
    for e in config.executors
}
step("ran", results=results, executors=executors, ssh_config=SSH_CONFIG, rate=site_rate,
     timings={"import": imported - start, "load": loaded - imported,
              "first_result_after_load": first - imported})
t = time.monotonic()
dfk.cleanup()
step("cleaned", cleanup=time.monotonic() - t)

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

local = HighThroughputExecutor(label="local", address="127.0.0.1", max_workers_per_node=2,
                               provider=LocalProvider(init_blocks=1, max_blocks=1))
with parsl.load(Config(executors=[local], strategy_period=1, run_dir="runinfo-local")):
    local_rate = rate(python_app(executors=["local"])(noop))
step("done", rate=local_rate)
'''

MPI_DRIVER = """
import json, logging, os, subprocess, sys
import parsl
from parsl import python_app
sys.path.insert(0, os.getcwd())
from mpi_config import config

class Keep(logging.Handler):
    messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


logging.getLogger("pwgen.executors").addHandler(Keep())
logging.getLogger("pwgen.executors").setLevel(logging.INFO)


@python_app
def ranks(parsl_resource_specification={}):
    import os, subprocess
    prefix = os.environ["PARSL_MPI_PREFIX"]
    done = subprocess.run(f"{prefix} hostname", shell=True, capture_output=True, text=True)
    return prefix, sorted(done.stdout.split()), done.returncode

with parsl.load(config):
    spec = {"num_nodes": 2, "ranks_per_node": 1}
    result = ranks(parsl_resource_specification=spec).result()
    executor = config.executors[0]
    print(json.dumps({"result": result, "type": type(executor).__name__,
                      "launch_cmd": executor.launch_cmd}), flush=True)
    # In bad state, the DFK does not scale the executor in at cleanup: pwgen's
    # shutdown must cancel the block itself.
    executor.set_bad_state_and_fail_all(RuntimeError("test: executor in bad state"))
print(json.dumps({"logs": Keep.messages}), flush=True)
"""


EXIT_DRIVER = """
import os, sys
import parsl
sys.path.insert(0, os.getcwd())
from parsl_config import config

parsl.load(config)


@parsl.python_app(executors=["lab1"])
def where():
    import socket
    return socket.gethostname()


print(where().result(), flush=True)
# No dfk.cleanup(): pwgen's atexit hook must still take the sites down.
"""


SIGINT_DRIVER = """
import os, sys
import parsl
from parsl import python_app
sys.path.insert(0, os.getcwd())
from parsl_config import config


def nap(x):
    import time
    time.sleep(60)
    return x


with parsl.load(config):
    apps = [python_app(nap, executors=[label]) for label in ("lab1", "lab2")]
    futures = [app(i) for app in apps for i in range(2)]
    print("submitted", flush=True)
    [future.result() for future in futures]
"""


@dataclass
class Lab:
    state: LabState
    project: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    project = tmp_path_factory.mktemp("remote-config-project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, project, sites=2, compute_nodes=2) as state:
        yield Lab(state, project)


def lab_sites(**per_label: str) -> str:
    """The lab's sites.yaml with extra settings appended to some sites."""
    text = (LAB_DIR / "sites.yaml").read_text()
    for label, extra in per_label.items():
        text = text.replace(f"- label: {label}\n", f"- label: {label}\n  {extra}\n")
    return text


def lab_ssh(label: str, command: str) -> str:
    """A command on a login node through the lab's own ssh config (its own connection)."""
    return ssh(LAB_DIR, label, command, timeout=30)


def interchanges_of(project: Path) -> list[str]:
    """Live interchange processes started from the project dir (other labs run Parsl too)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if (
            info["status"] != psutil.STATUS_ZOMBIE
            and info["cwd"] == str(project)
            and "interchange.py" in " ".join(info["cmdline"] or [])
        ):
            found.append(f"{proc.pid}: {' '.join(info['cmdline'])}")
    return found


class Driver:
    """The driver script in a subprocess: one JSON line per step, go on with a newline."""

    def __init__(self, project: Path, script: str, *args: str) -> None:
        (project / "driver.py").write_text(script)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PW_", "PWGEN_"))}
        # A plain Python: the venv's bin is NOT on PATH; the module puts it there itself.
        env["PATH"] = "/usr/bin:/bin"
        self.proc = subprocess.Popen(
            [sys.executable, "driver.py", *args],
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(project / "driver.err").open("w"),
            text=True,
        )
        self.project = project

    def next(self, name: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            tail = (self.project / "driver.err").read_text()[-3000:]
            raise AssertionError(f"driver exited {self.proc.returncode} before {name}: {tail}")
        data: dict[str, Any] = json.loads(line)
        assert data["step"] == name, data
        return data

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.mark.lab
def test_generated_config_runs_on_both_sites(lab: Lab) -> None:
    project = lab.project
    configure(project, lab_sites(lab1="nodes_per_block: 2"))
    driver = Driver(project, DRIVER)
    try:
        ran = driver.next("ran")
        for label, hosts in (("lab1", {"lab1-c1", "lab1-c2"}), ("lab2", {"lab2-c1", "lab2-c2"})):
            results = ran["results"][label]
            assert [value for _, value in results] == [i * i for i in range(20)]
            seen = {host for host, _ in results}
            assert seen <= hosts, seen
            if label == "lab1":  # a 2-node block (SrunLauncher): both nodes work
                assert seen == hosts
        for label, executor in ran["executors"].items():
            record = lab.state.site(label)
            assert record is not None
            remote = executor["remote_cert_dir"]
            assert executor["encrypted"] is True
            assert remote.startswith(f"/home/{record.user}/.pwgen/work/")
            assert f"--cert_dir {remote} " in executor["launch_cmd"]
            internal = read_facts(project / ".pwgen" / "facts", label).internal_address
            assert f"-a {internal} " in executor["launch_cmd"]
            # The workers really run with the shipped certs, on the compute nodes.
            pools = [
                cmd
                for node in record.computes
                for cmd in netns_processes(node.netns, "process_worker_pool")
            ]
            assert pools and all(f"--cert_dir {remote} " in cmd for cmd in pools), pools
            assert all(f"--port={executor['port']} " in cmd for cmd in pools)
            # On the site: 0700, the site user's, and no real server secret.
            listing = lab_ssh(label, f"stat -c '%a %U' {remote}; cat {remote}/server.key_secret")
            mode_owner, secret_file = listing.split("\n", 1)
            assert mode_owner == f"700 {record.user}"
            _, real_secret = zmq.auth.load_certificate(
                Path(executor["cert_dir"]) / "server.key_secret"
            )
            assert real_secret.decode() not in secret_file
            assert re.search(r'secret-key = "\S{40}"', secret_file)
        driver.go_on()

        cleaned = driver.next("cleaned")
        # Nothing left on either side: no jobs, relays, pools, masters, interchange.
        for label, executor in ran["executors"].items():
            record = lab.state.site(label)
            assert record is not None
            assert lab_ssh(label, "squeue -h") == ""
            assert netns_processes(record.login.netns, "pwgen-relay") == []
            assert wait_for(
                lambda r=record: (
                    not any(
                        netns_processes(node.netns, "process_worker_pool") for node in r.computes
                    )
                ),
                timeout=10,
            )
            assert not master_running(ran["ssh_config"], label)
            assert not alive(executor["master"])
            leftovers = lab_ssh(label, f"ls -A {executor['remote_run_dir']}/{label}")
            assert "certificates" not in leftovers.split()
        assert interchanges_of(project) == []
        driver.go_on()

        local = driver.next("done")
        assert driver.proc.wait(30) == 0
    finally:
        driver.stop()
    timings = ran["timings"]
    print(
        f"\nimport of parsl_config.py (providers contact the sites): {timings['import']:.2f} s"
        f"\nparsl.load (2 tunnels, certs, interchanges): {timings['load']:.2f} s"
        f"\nparsl.load -> first result: {timings['first_result_after_load']:.2f} s"
        f"\ndfk.cleanup: {cleaned['cleanup']:.2f} s"
        f"\nno-op tasks/s, median of 3 x 2,000: lab2 (1 node x 2 workers, tunnelled) "
        f"{ran['rate']:.0f}, local HTEX (2 workers, same machine) {local['rate']:.0f}; "
        f"ratio {ran['rate'] / local['rate']:.2f}"
    )


@pytest.mark.lab
def test_mpi_site_runs_srun_over_two_nodes(lab: Lab) -> None:
    project = lab.project
    text = lab_sites(lab2="executor: mpi\n  nodes_per_block: 2")
    chosen = [site for site in parse_sites(text) if site.label == "lab2"]
    source = render_config(chosen, source="sites.yaml", state_dir=project / ".pwgen")
    assert "site_lab2 = SiteMPIExecutor(" in source and "mpi_launcher='srun'" in source
    (project / "mpi_config.py").write_text(source)
    started = time.monotonic()
    driver = Driver(project, MPI_DRIVER)
    try:
        assert driver.proc.stdout is not None
        line = driver.proc.stdout.readline()
        logs = json.loads(driver.proc.stdout.readline() or "{}").get("logs", [])
        assert driver.proc.wait(120) == 0, (project / "driver.err").read_text()[-3000:]
    finally:
        driver.stop()
    data = json.loads(line)
    prefix, hosts, code = data["result"]
    assert data["type"] == "SiteMPIExecutor" and code == 0
    assert prefix.startswith("srun --ntasks 2 --ntasks-per-node 1")
    assert hosts == ["lab2-c1", "lab2-c2"]
    assert "--cert_dir /home/" in data["launch_cmd"] and "--enable_mpi_mode" in data["launch_cmd"]
    assert any("cancelling blocks still active" in message for message in logs), logs
    assert wait_for(lambda: lab_ssh("lab2", "squeue -h") == "", timeout=10)
    assert netns_processes(lab.state.sites[1].login.netns, "pwgen-relay") == []
    print(f"\nMPI site: srun over {hosts} in {time.monotonic() - started:.1f} s")


@pytest.mark.lab
def test_exit_without_cleanup_leaves_nothing(lab: Lab) -> None:
    project = lab.project
    configure(project, lab_sites())
    driver = Driver(project, EXIT_DRIVER)
    try:
        assert driver.proc.wait(120) == 0, (project / "driver.err").read_text()[-3000:]
        assert driver.proc.stdout is not None
        assert driver.proc.stdout.read().strip() in ("lab1-c1", "lab1-c2")
    finally:
        driver.stop()
    assert "Python exits without dfk.cleanup()" in (project / "driver.err").read_text()
    assert_nothing_left(lab)


def assert_nothing_left(lab: Lab) -> None:
    """No Slurm job, relay, worker pool, ssh master or interchange of this project."""
    for record in lab.state.sites:
        assert wait_for(lambda r=record: lab_ssh(r.label, "squeue -h") == "", timeout=10)
        assert netns_processes(record.login.netns, "pwgen-relay") == []
        assert wait_for(
            lambda r=record: (
                not any(netns_processes(node.netns, "process_worker_pool") for node in r.computes)
            ),
            timeout=10,
        )
        assert not project_ssh(lab.project).master_running(record.label)
    assert interchanges_of(lab.project) == []


@pytest.mark.lab
def test_ctrl_c_mid_run_leaves_nothing(lab: Lab) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C, while tasks run."""
    project = lab.project
    configure(project, lab_sites())
    (project / "driver.py").write_text(SIGINT_DRIVER)
    proc = subprocess.Popen(
        [sys.executable, "driver.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=(project / "driver.err").open("w"),
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
        computes = [node.netns for site in lab.state.sites for node in site.computes]
        assert wait_for(
            lambda: sum(bool(netns_processes(ns, "process_worker_pool")) for ns in computes) >= 2,
            timeout=30,
        )
        os.killpg(proc.pid, signal.SIGINT)
        interrupted = time.monotonic()
        proc.wait(60)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "KeyboardInterrupt" in (project / "driver.err").read_text()
    assert_nothing_left(lab)
    print(f"\nCtrl-C mid-run: the script exited {took:.2f} s later, sites torn down")

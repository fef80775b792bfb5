"""SSH-backed Slurm and PBS Pro providers: remote commands, path mapping, failures.

Offline tests replace the ssh call with a recorder (script text and command strings).
Lab tests (marked `lab`, root) run the real thing against a lab of 2 sites x 2
compute nodes through pwgen's ssh config and one ControlMaster per site: lab1 runs
Slurm, lab2 OpenPBS (built from $PWGEN_PBS_TARBALL or ../shared/pbs/, see
tests/test_pbs_lab.py).
"""

import inspect
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import Recorder
from lab_helpers import master_pid, remote_output, running_lab
from parsl.jobs.states import JobState
from parsl.launchers import SingleNodeLauncher, SrunLauncher
from parsl.providers.errors import ScriptPathError
from parsl.utils import RepresentationMixin

from pwgen.poll import poll
from pwgen.providers import ProviderConnectionError, SSHPBSProProvider, SSHSlurmProvider
from pwgen.providers.remote import RemoteClusterProvider
from pwgen.sites import load_sites
from pwgen.ssh import SshSetup, prepare_ssh
from pwgen.ssh.command import SshCommand

PREFIX, SUBNET = "pwpr", "10.245.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwpr-lab"
REMOTE_DIR = "/home/{user}/.pwgen/provider-test"


# --- offline: the ssh call is recorded, nothing is contacted --------------------------


def _local_dir(tmp_path: Path) -> str:
    # What the DFK does: a LOCAL script dir, here a relative one like runinfo/000/...
    local = tmp_path / "runinfo" / "000" / "submit_scripts"
    local.mkdir(parents=True)
    return str(local)


def _assert_only_remote(text: str, local: str, remote: str) -> None:
    assert local not in text and os.path.abspath(local) not in text
    assert str(Path(local).parent.parent) not in text  # nothing under the local run dir


def test_slurm_script_and_commands_are_remote(
    recorder: Recorder, ssh_config: str, tmp_path: Path
) -> None:
    remote = "/home/u/.pwgen/scripts"
    provider = SSHSlurmProvider(
        partition="compute",
        launcher=SrunLauncher(),
        ssh_config=ssh_config,
        host="site",
        remote_script_dir=remote,
    )
    # Construction: the remote dir first, then the parent's sacct probe (-> squeue).
    assert recorder.calls[0][0] == f"umask 077 && mkdir -p -- {remote}"
    assert recorder.calls[1][0] == "sacct -X"
    assert provider._cmd.startswith("squeue")
    local = provider.script_dir = _local_dir(tmp_path)

    job_id = provider.submit("echo hi", tasks_per_node=1)

    assert job_id == "42"
    script = recorder.copied()
    copy_cmd = next(cmd for cmd, stdin in recorder.calls if stdin is not None)
    name = re.search(r"--job-name=(\S+)", script)
    assert name is not None
    remote_script = f"{remote}/{name.group(1)}"
    assert copy_cmd.endswith(f"cat > {remote_script}")
    assert recorder.calls[-1][0] == f"sbatch {remote_script}"
    assert f"#SBATCH --output={remote_script}.stdout\n" in script
    assert f"#SBATCH --error={remote_script}.stderr\n" in script
    assert f'SCRIPT_DIR="{remote}"\n' in script
    _assert_only_remote(script, provider.script_dir, remote)
    assert provider.resources[job_id]["job_stdout_path"] == f"{remote_script}.stdout"
    assert provider.resources[job_id]["job_stderr_path"] == f"{remote_script}.stderr"
    # The local copy is the script the site runs; script_dir is local again.
    assert provider.script_dir == local
    assert (Path(local) / name.group(1)).read_text() == script


def test_pbs_script_and_commands_are_remote(
    recorder: Recorder, ssh_config: str, tmp_path: Path
) -> None:
    remote = "/home/u/pbs"
    provider = SSHPBSProProvider(
        queue="workq", ssh_config=ssh_config, host="site", remote_script_dir=remote
    )
    assert [cmd for cmd, _ in recorder.calls] == [f"umask 077 && mkdir -p -- {remote}"]
    provider.script_dir = _local_dir(tmp_path)
    # A user command that names the local script dir is mapped too (safety net).
    command = f"echo {os.path.abspath(provider.script_dir)}/x"

    job_id = provider.submit(command, tasks_per_node=1)

    assert job_id == "42.pbs"
    script = recorder.copied()
    name = re.search(r"#PBS -N (\S+)", script)
    assert name is not None
    remote_script = f"{remote}/{name.group(1)}"
    assert recorder.calls[-1][0] == f"qsub  -q workq {remote_script}"
    assert f"#PBS -o {remote_script}.stdout\n" in script
    assert f"#PBS -e {remote_script}.stderr\n" in script
    assert f"echo {remote}/x" in script
    _assert_only_remote(script, provider.script_dir, remote)
    assert provider.status([job_id])[0].state == JobState.RUNNING
    assert provider.cancel([job_id]) == [True]
    assert recorder.calls[-2][0] == "qstat -x -f -F json 42.pbs"
    assert recorder.calls[-1][0] == "qdel 42.pbs"


def test_ssh_failure_during_sacct_probe_is_not_masked(
    monkeypatch: pytest.MonkeyPatch, ssh_config: str
) -> None:
    """mkdir works, then ssh fails: Parsl would silently pick squeue; we raise."""

    def run_remote(provider: Any, cmd: str, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        if cmd == "sacct -X":
            return 255, "", "ssh: connect to host 192.0.2.1 port 22: Connection refused"
        return 0, "", ""

    monkeypatch.setattr(RemoteClusterProvider, "_run_remote", run_remote)
    with pytest.raises(ProviderConnectionError, match="site 'site' over ssh: ssh: connect"):
        SSHSlurmProvider(ssh_config=ssh_config, host="site", remote_script_dir="/r")


@pytest.mark.parametrize("cls", [SSHSlurmProvider, SSHPBSProProvider])
def test_representation_mixin(
    cls: type[RemoteClusterProvider],
    recorder: Recorder,
    ssh_config: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parsl's convention: every constructor argument is an attribute of the same name."""
    provider = cls(ssh_config=ssh_config, host="site", remote_script_dir="/r", connect_timeout=7)
    monkeypatch.setattr(RepresentationMixin, "_validate_repr", True)  # as Parsl's own tests
    text = repr(provider)
    spec = inspect.getfullargspec(cls.__init__)
    for name in spec.args[1:] + spec.kwonlyargs:
        assert hasattr(provider, name), name
        assert f"{name}=" in text
    assert "connect_timeout=7" in text and "remote_script_dir='/r'" in text
    assert "host='site'" in text and "<unrecorded>" not in text
    assert provider.cmd_timeout > 10


def test_bad_settings_are_refused_before_any_ssh(recorder: Recorder, ssh_config: str) -> None:
    from parsl.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="absolute path"):
        SSHSlurmProvider(ssh_config=ssh_config, host="site", remote_script_dir="~/scripts")
    with pytest.raises(ConfigurationError, match="no such file"):
        SSHSlurmProvider(ssh_config="/nonexistent", host="site", remote_script_dir="/r")
    assert recorder.calls == []


# --- lab: real sshd + Slurm ----------------------------------------------------------


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshSetup]:
    """pwgen's ssh to the sites of a lab of its own (its config in a scratch state dir)."""
    schedulers = ("slurm", "pbspro")  # lab2: OpenPBS
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=2, schedulers=schedulers):
        sites = load_sites(LAB_DIR / "sites.yaml")
        ssh = prepare_ssh(sites, tmp_path_factory.mktemp("pwgen"), [LAB_DIR / "known_hosts"])
        try:
            yield ssh
        finally:
            for site in sites:
                ssh.stop_master(site.label)


def _remote(ssh: SshSetup, label: str, command: str) -> str:
    return remote_output(ssh.argv(label, command), timeout=30)


def _user(label: str) -> str:
    return f"{PREFIX}u{label[-1]}"


def _wait(check: Callable[[], bool], timeout: float = 20) -> None:
    assert poll(check, timeout, interval=0.2), "timed out"


def _slurm(ssh: SshSetup, tmp_path: Path, **kwargs: Any) -> SSHSlurmProvider:
    provider = SSHSlurmProvider(
        partition="compute",
        ssh_config=str(ssh.config),
        host="lab1",
        remote_script_dir=REMOTE_DIR.format(user=_user("lab1")),
        **kwargs,
    )
    provider.script_dir = _local_dir(tmp_path)  # as the DFK does
    return provider


@pytest.mark.lab
def test_slurm_job_runs_on_a_compute_node_and_is_cancelled(ssh: SshSetup, tmp_path: Path) -> None:
    provider = _slurm(ssh, tmp_path, launcher=SrunLauncher())
    assert provider._cmd.startswith("squeue")  # accounting is off in the lab; ssh worked
    remote = provider.remote_script_dir

    job_id = provider.submit("hostname > $HOME/out.$SLURM_JOB_ID; sleep 30", tasks_per_node=1)

    assert provider.status([job_id])[0].state in (JobState.PENDING, JobState.RUNNING)
    _wait(lambda: provider.status([job_id])[0].state == JobState.RUNNING)
    _wait(lambda: "lab1-c" in _remote(ssh, "lab1", f"cat out.{job_id} 2>/dev/null || true"))
    assert _remote(ssh, "lab1", f"cat out.{job_id}").strip() in ("lab1-c1", "lab1-c2")
    # The script the site ran: in remote_script_dir, only remote paths, same as the local copy.
    stdout_path = provider.resources[job_id]["job_stdout_path"]
    remote_script = stdout_path.removesuffix(".stdout")
    assert remote_script.startswith(remote + "/")
    script = _remote(ssh, "lab1", f"cat {remote_script}")
    assert f"--output={stdout_path}\n" in script and f'SCRIPT_DIR="{remote}"' in script
    _assert_only_remote(script, provider.script_dir, remote)
    assert str(tmp_path) not in script
    local_copy = Path(provider.script_dir) / Path(remote_script).name
    assert local_copy.read_text() == script
    assert _remote(ssh, "lab1", f"stat -c %a {remote}").strip() == "700"

    assert provider.cancel([job_id]) == [True]

    assert provider.status([job_id])[0].state == JobState.CANCELLED
    _wait(lambda: _remote(ssh, "lab1", "squeue -h").strip() == "")
    _remote(ssh, "lab1", f"rm -f out.{job_id}")


@pytest.mark.lab
def test_failed_job_stderr_is_fetched(ssh: SshSetup, tmp_path: Path) -> None:
    provider = _slurm(ssh, tmp_path, launcher=SingleNodeLauncher())
    job_id = provider.submit("echo boom-$SLURM_JOB_ID >&2; exit 3", tasks_per_node=1)
    _wait(lambda: _remote(ssh, "lab1", "squeue -h").strip() == "")
    stdout, stderr = provider.fetch_job_output(job_id)
    assert f"boom-{job_id}" in stderr
    assert f"boom-{job_id}" not in stdout
    assert provider.status([job_id])[0].terminal


def _broken_config(ssh: SshSetup, tmp_path: Path, host: str, port: int, keys: str) -> str:
    """The same settings (master, BatchMode), plus an alias `broken` that cannot work."""
    text = ssh.config.read_text()
    if keys == "unpinned":
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        text = text.replace(
            f'UserKnownHostsFile "{ssh.known_hosts}"', f'UserKnownHostsFile "{empty}"'
        )
    path = tmp_path / "broken_config"
    path.write_text(f"Host broken\n    HostName {host}\n    Port {port}\n\n{text}")
    return str(path)


@pytest.mark.lab
@pytest.mark.parametrize(
    ("where", "port", "keys", "message"),
    [
        ("login", 2, "pinned", "Connection refused"),  # a closed port
        ("nowhere", 22, "pinned", "No route to host"),  # an unused lab address
        ("login", 22, "unpinned", "Host key verification failed"),  # no pinned key
    ],
)
def test_unreachable_site_fails_construction_clearly(
    ssh: SshSetup, tmp_path: Path, where: str, port: int, keys: str, message: str
) -> None:
    login = load_sites(LAB_DIR / "sites.yaml")[0].host
    host = login if where == "login" else login.rsplit(".", 2)[0] + ".254.1"
    config = _broken_config(ssh, tmp_path, host, port, keys)
    started = time.monotonic()
    with pytest.raises(ProviderConnectionError, match="site 'broken'") as raised:
        SSHSlurmProvider(
            ssh_config=config, host="broken", remote_script_dir="/tmp/x", connect_timeout=3
        )
    assert time.monotonic() - started < 5
    assert message in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ProviderConnectionError, match=message):
        SSHPBSProProvider(ssh_config=config, host="broken", remote_script_dir="/tmp/x")


@pytest.mark.lab
def test_uncreatable_remote_dir_is_refused(ssh: SshSetup) -> None:
    with pytest.raises(ScriptPathError, match="Permission denied"):
        SSHSlurmProvider(ssh_config=str(ssh.config), host="lab1", remote_script_dir="/root/x")


def _ssh_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if proc.info["name"] == "ssh" and marker in cmdline and alive:
            found.append(proc)
    return found


@pytest.mark.lab
def test_command_timeout_stops_the_remote_command(ssh: SshSetup, tmp_path: Path) -> None:
    provider = _slurm(ssh, tmp_path)
    started = time.monotonic()
    retcode, stdout, _ = provider.execute_wait("echo start; sleep 41; echo never", timeout=1)
    assert retcode == 124 and stdout == "start\n"
    assert time.monotonic() - started < 3
    assert _ssh_processes("sleep 41") == []
    assert _remote(ssh, "lab1", "ps -eo args | grep -c '[s]leep 41' || true").strip() == "0"


@pytest.mark.lab
def test_hung_ssh_is_killed(ssh: SshSetup, tmp_path: Path) -> None:
    """A master that stops answering (network hang): the ssh client is killed locally."""
    # A master of its own (own ControlPath), so the shared one is not disturbed.
    text = ssh.config.read_text()
    config = tmp_path / "own_master_config"
    config.write_text(re.sub(r'ControlPath "(\S+)/%C"', r'ControlPath "\1/pwpr-hang-%C"', text))
    provider = SSHSlurmProvider(
        ssh_config=str(config),
        host="lab1",
        remote_script_dir=REMOTE_DIR.format(user=_user("lab1")),
        connect_timeout=1,
    )
    own = SshCommand(str(config), "lab1")
    master = master_pid(own)
    os.kill(master, signal.SIGSTOP)
    try:
        started = time.monotonic()
        retcode, _, stderr = provider.execute_wait("echo marker-hung-7", timeout=1)
        elapsed = time.monotonic() - started
    finally:
        os.kill(master, signal.SIGCONT)
        subprocess.run(own.control("exit"), capture_output=True)
    assert retcode == 255 and "did not answer" in stderr
    assert elapsed < 8
    assert _ssh_processes("marker-hung-7") == []


@pytest.mark.lab
def test_pbspro_over_ssh_with_real_openpbs(ssh: SshSetup, tmp_path: Path) -> None:
    remote = REMOTE_DIR.format(user=_user("lab2"))
    provider = SSHPBSProProvider(ssh_config=str(ssh.config), host="lab2", remote_script_dir=remote)
    provider.script_dir = _local_dir(tmp_path)

    job_id = provider.submit("echo pbs-out; echo pbs-err >&2; sleep 60", tasks_per_node=1)

    assert re.fullmatch(r"\d+\.lab2-login", job_id), job_id
    job = json.loads(_remote(ssh, "lab2", f"qstat -f -F json {job_id}"))["Jobs"][job_id]
    remote_script = job["Submit_arguments"].split()[-1]
    assert remote_script.startswith(remote + "/")
    assert provider.resources[job_id]["job_stdout_path"] == remote_script + ".stdout"
    script = _remote(ssh, "lab2", f"cat {remote_script}")
    assert f"#PBS -o {remote_script}.stdout\n#PBS -e {remote_script}.stderr\n" in script
    _assert_only_remote(script, provider.script_dir, remote)
    _wait(lambda: provider.status([job_id])[0].state == JobState.RUNNING)

    assert provider.cancel([job_id]) == [True]

    # PBS signals the job, then (after the queue's kill_delay at most) ends it and
    # copies its output home: -o/-e files appear only then (through $usecp).
    _wait(lambda: "pbs-err" in provider.fetch_job_output(job_id)[1], timeout=40)
    assert "pbs-out" in provider.fetch_job_output(job_id)[0]

    def finished() -> dict[str, Any]:
        job = json.loads(_remote(ssh, "lab2", f"qstat -x -f -F json {job_id}"))["Jobs"][job_id]
        return job if job["job_state"] == "F" else {}

    done = poll(finished, 60, interval=0.2)  # the server records F after the copy-back
    assert done and done["Exit_status"] in (128 + 15, 256 + 15)  # SIGTERM, from qdel

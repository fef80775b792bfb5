"""Helpers for the lab tests: ssh through the lab's own ssh_config, probes inside nodes.

Every probe targets lab addresses only; the lab's `unreachable` route keeps a
failed one on this machine.
"""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import REPO, run_pwgen

from pwgen.lab.state import LabState
from pwgen.lab.system import missing_packages
from pwgen.layout import StateLayout
from pwgen.poll import poll
from pwgen.ssh.command import Master, SshCommand
from pwgen.ssh.prepare import SshSetup
from pwgen.status.processes import process_kind

#: The flux-core release tarball of ../shared/flux (issue 16).
FLUX_TARBALL_NAME = "flux-core-0.88.0.tar.gz"


def skip_reason() -> str | None:
    """Why the lab tests cannot run here, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the lab needs root on Linux (network namespaces, users, daemons)"
    if shutil.which("dpkg-query") is None:
        return "the lab needs a Debian machine"
    missing = missing_packages()
    if missing:
        return f"missing Debian packages (pwgen lab up --install): {' '.join(missing)}"
    return None


def shared_tarball(directory: str, name: str, variable: str) -> Path:
    """A source tarball of ../shared/<directory>/ (or $<variable>); missing: the test
    skips, or fails under CI (CI=true)."""
    given = os.environ.get(variable)
    path = Path(given) if given else REPO.parent / "shared" / directory / name
    if not path.is_file():
        message = f"no {name} at {path} (set {variable})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def flux_tarball() -> Path:
    """The flux-core tarball; a machine that cannot run the lab (which builds it): a skip."""
    path = shared_tarball("flux", FLUX_TARBALL_NAME, "PWGEN_FLUX_TARBALL")
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return path


def lab_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The lab CLI as its own process (needed for `ssh`, which execs)."""
    code = "from pwgen.lab.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def molecule_labs_down(prefix: str = "pwmc") -> list[str]:
    """Take down the Molecule labs a killed `molecule test` left up (their state dirs are
    /tmp/<prefix>-<scenario>); the lab namespaces still up afterwards."""
    for lab_json in sorted(Path("/tmp").glob(f"{prefix}-*/lab.json")):
        lab_cli("down", "--state-dir", str(lab_json.parent), timeout=300)
    return lab_namespaces(prefix)


def lab_namespaces(prefix: str) -> list[str]:
    """The network namespaces of the labs named <prefix>."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(f"{prefix}-")]


def lab_ssh_command(state_dir: Path, site: str) -> SshCommand:
    """The lab's own ssh (`<state_dir>/ssh_config`) to a site's login node as the site user."""
    return SshCommand(str(state_dir / "ssh_config"), site)


def remote_output(argv: list[str], timeout: float = 60, stdin: str | None = None) -> str:
    """Run an ssh argv that runs a remote command; the test fails unless it exits 0; stdout."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
    return done.stdout


def ssh(
    state_dir: Path, site: str, command: str, timeout: float = 60, stdin: str | None = None
) -> str:
    """Run a shell command on a site's login node as the site user; return stdout."""
    return remote_output(lab_ssh_command(state_dir, site).remote(command), timeout, stdin)


def on_project_site(
    project: Path, label: str, command: str, master: Master = Master.AUTO, timeout: float = 60
) -> str:
    """A shell command on a site through the project's own ssh config (pwgen's); stdout.

    `Master.AUTO` starts the site's master if none runs (stop it after); `Master.JOIN` never.
    """
    return remote_output(project_ssh(project).command(label).remote(command, master), timeout)


def project_ssh(project: Path) -> SshSetup:
    """The ssh config and pinned keys `pwgen provision` wrote in `project` (its masters)."""
    layout = StateLayout(project / ".pwgen")
    return SshSetup(layout.ssh_config, layout.known_hosts)


def stop_masters(project: Path, labels: Iterable[str]) -> None:
    """Stop the project's ssh master of each site (none running is fine)."""
    setup = project_ssh(project)
    for label in labels:
        setup.stop_master(label)


def pwgen_provision(project: Path, *args: str, timeout: float = 600) -> None:
    """`pwgen provision ARGS` in `project`; the test fails (with its output) on an error."""
    done = run_pwgen("provision", *args, cwd=project, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr


@contextmanager
def masters_stopped(project: Path, labels: Iterable[str]) -> Iterator[None]:
    """Stop the project's ssh master of each site when the block ends, however it ends."""
    try:
        yield
    finally:
        stop_masters(project, labels)


def master_running(config: Path | str, label: str) -> bool:
    """Whether the ssh master of `label` in ssh config `config` answers `ssh -O check`."""
    check = SshCommand(str(config), label).control("check")
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def master_pid(command: SshCommand) -> int:
    """The pid of the site's running ssh master (`ssh -O check` names it)."""
    check = subprocess.run(command.control("check"), capture_output=True, text=True, check=True)
    return int(check.stderr.split("pid=")[1].split(")")[0])


def sbatch_and_wait(
    state_dir: Path, site: str, partition: str, count: int
) -> list[tuple[int, str]]:
    """Submit `count` jobs that print their hostname; wait for all; (job id, hostname) each."""
    script = (
        f"ids=$(for i in $(seq {count}); do "
        f"sbatch --parsable -p {partition} -o out.%j --wrap hostname; done | tr '\\n' ,); "
        "ids=${ids%,}; "
        # Poll squeue quickly: `sbatch --wait` polls every few seconds.
        'for i in $(seq 300); do [ -z "$(squeue -h -j $ids 2>/dev/null)" ] && break; '
        "sleep 0.1; done; "
        'for id in ${ids//,/ }; do echo "$id $(cat out.$id)"; rm -f out.$id; done'
    )
    lines = ssh(state_dir, site, script).split()  # the site user's shell is bash
    return [(int(lines[i]), lines[i + 1]) for i in range(0, len(lines), 2)]


def netns_connect(netns: str, host: str, port: int, then: str, seconds: float = 1) -> str:
    """Connect from inside a node's namespace to host:port, then run `then` (Python, the
    socket is `s`); what it prints, or the error. `seconds`: connect and read timeout."""
    code = (
        "import socket\n"
        "try:\n"
        f"    s = socket.create_connection(({host!r}, {port}), timeout={seconds})\n"
        f"    s.settimeout({seconds})\n"
        f"    {then}\n"
        "except OSError as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    done = subprocess.run(
        # Root in the node's network namespace only: this very Python works there.
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=10 + 2 * seconds,
        check=True,
    )
    return done.stdout.strip()


def tcp_probe(netns: str, host: str, port: int) -> str:
    """Connect from inside a node's namespace: 'ok' or the error (1 s timeout)."""
    return netns_connect(netns, host, port, "s.close(); print('ok')")


def lab_status(state_dir: Path) -> dict[str, Any]:
    done = lab_cli("status", "--json", "--state-dir", str(state_dir))
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def wait_for(check: Callable[[], bool], timeout: float = 10) -> bool:
    return poll(check, timeout) is not None


def pbs_tarball() -> Path:
    """The OpenPBS source tarball ($PWGEN_PBS_TARBALL, else ../shared/pbs/)."""
    from pwgen.lab.pbs_build import TARBALL_ENV, TARBALL_NAME

    return shared_tarball("pbs", TARBALL_NAME, TARBALL_ENV)


@contextmanager
def running_lab(
    prefix: str,
    subnet: str,
    state_dir: Path,
    sites: int = 2,
    compute_nodes: int = 1,
    schedulers: tuple[str, ...] = (),
) -> Iterator[LabState]:
    """A lab of its own (prefix, range, state dir) for one test module; always taken down.

    `schedulers`: each site's (pwgen.lab.plan); with pbspro, OpenPBS from `pbs_tarball()`.
    """
    from pwgen.lab import lifecycle
    from pwgen.lab.plan import make_options
    from pwgen.lab.state import load_state

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    pbs = str(pbs_tarball()) if "pbspro" in schedulers else None
    lifecycle.down(state_dir)  # a run killed half-way left it up
    try:
        options = make_options(
            prefix, subnet, sites, compute_nodes, state_dir, schedulers=schedulers, pbs=pbs
        )
        lifecycle.up(options)
        state = load_state(state_dir)
        assert state is not None
        yield state
    finally:
        lifecycle.down(state_dir)


@contextmanager
def provisioned_lab(
    prefix: str,
    subnet: str,
    state_dir: Path,
    project: Path,
    sites: int = 2,
    compute_nodes: int = 1,
    provision_args: Sequence[str] = (),
) -> Iterator[LabState]:
    """`running_lab`, provisioned by `pwgen provision` (the lab's sites.yaml) in `project`;
    the project's ssh masters are stopped before the lab goes down."""
    with running_lab(prefix, subnet, state_dir, sites, compute_nodes) as state:
        lab_sites = str(state_dir / "sites.yaml")
        pwgen_provision(project, "--sites", lab_sites, *provision_args)
        with masters_stopped(project, [site.label for site in state.sites]):
            yield state


def netns_processes(netns: str, marker: str) -> list[str]:
    """Live processes of a lab node's namespace whose command line holds `marker`."""
    from pwgen.lab.procs import alive

    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and alive(int(pid)):
            found.append(f"{pid}: {cmdline}")
    return found


@contextmanager
def killed_with_interchanges_held(proc: "subprocess.Popen[Any]") -> Iterator[None]:
    """`proc` (a `pwgen run`) killed with SIGKILL and reaped, its interchanges stopped
    (SIGSTOP) meanwhile. An interchange's guard ends it and tears its run down within a
    second of the controller's death (pwgen.interchange_guard); held, it leaves all of
    that to `teardown`, as when the interchange hung with its controller. Continued, an
    interchange that `teardown` did not stop goes on (and its guard ends it)."""
    interchanges = []
    for child in psutil.Process(proc.pid).children():
        with contextlib.suppress(psutil.Error):  # a short-lived one (ssh check) ended
            if process_kind(" ".join(child.cmdline())) == "interchange":
                interchanges.append(child)
    assert interchanges, "no interchange"
    for interchange in interchanges:
        interchange.suspend()
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        yield
    finally:
        for interchange in interchanges:
            with contextlib.suppress(psutil.NoSuchProcess):
                interchange.resume()

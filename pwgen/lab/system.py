"""The host: running commands, the root and package checks, hardware facts."""

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pwgen.lab.errors import LabError

PACKAGES = (
    "openssh-server",
    "openssh-client",
    "slurm-wlm",
    "slurmctld",
    "slurmd",
    "slurm-client",
    "munge",
    "rsync",
    "autossh",
    # OpenMPI for MPI sites: ranks start with `srun --mpi=pmix` (Slurm's pmix_v4
    # plugin loads OpenMPI's libpmix2); mpicc (libopenmpi-dev, gcc) builds MPI programs.
    "openmpi-bin",
    "libopenmpi-dev",
    # MPICH beside it (Debian keeps OpenMPI the default `mpicc`; `mpicc.mpich` builds for
    # MPICH): both run under a Flux site's `flux run` (examples/flux_multisite.py).
    "mpich",
    "libmpich-dev",
    "gcc",
)
# Commands of the base system the lab also needs, and the package that has each.
BASE_COMMANDS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "useradd": "passwd",
    "ssh-keygen": "openssh-client",
}
_POLICY_RC = Path("/usr/sbin/policy-rc.d")


def run(argv: Sequence[str], *, timeout: float = 30, check: bool = True) -> str:
    """Run a command, return its stdout; a failure is a LabError quoting its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise LabError(f"command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit code {done.returncode}"
        raise LabError(f"`{' '.join(argv)}` failed: {last}")
    return done.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "pwgen lab needs root (it creates network namespaces, users and daemons): "
            "run it with sudo"
        )


def missing_packages(packages: Sequence[str] = PACKAGES) -> list[str]:
    """The Debian packages (default: the lab's) that are not installed."""
    if shutil.which("dpkg-query") is None:
        raise LabError("pwgen lab needs a Debian or Ubuntu machine (dpkg-query not found)")
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0] for line in done.stdout.splitlines() if line.endswith(" installed")
    }
    return [package for package in packages if package not in installed]


def install_command(packages: Sequence[str]) -> list[str]:
    return ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]


def ensure_packages(install: bool, packages: Sequence[str] = PACKAGES) -> list[str]:
    """Check (or with `install`, apt-get install) the packages; return what was installed."""
    missing = missing_packages(packages)
    if missing and not install:
        raise LabError(
            f"missing Debian packages: {', '.join(missing)}; install them with "
            f"`{' '.join(install_command(missing))}` or run `pwgen lab up --install`"
        )
    if missing:
        _apt_install(missing)
    _check_base_commands()
    return missing


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep the packages' own daemons from starting in the root namespace: each
    # lab node starts its own.
    added_policy = not _POLICY_RC.exists()
    if added_policy:
        _POLICY_RC.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
        _POLICY_RC.chmod(0o755)
    try:
        argv = install_command(packages)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # A fresh machine has no package lists yet.
            run(["apt-get", "update", "-q"], timeout=600)
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"`{' '.join(argv)}` failed: {last}")
    finally:
        if added_policy:
            _POLICY_RC.unlink(missing_ok=True)


def _check_base_commands() -> None:
    for command, package in BASE_COMMANDS.items():
        if shutil.which(command) is None:
            raise LabError(f"command {command} not found: apt-get install {package}")


@dataclass(frozen=True)
class Hardware:
    """One compute node as Slurm sees it (`slurmd -C`): the machine's real shape."""

    cpus: int
    boards: int
    sockets_per_board: int
    cores_per_socket: int
    threads_per_core: int
    real_memory: int  # MiB, a little below the machine's so slurmd never drains the node


def hardware() -> Hardware:
    text = run(["slurmd", "-C"])
    values = dict(re.findall(r"(\w+)=(\d+)", text))
    try:
        return Hardware(
            cpus=int(values["CPUs"]),
            boards=int(values["Boards"]),
            sockets_per_board=int(values["SocketsPerBoard"]),
            cores_per_socket=int(values["CoresPerSocket"]),
            threads_per_core=int(values["ThreadsPerCore"]),
            real_memory=int(values["RealMemory"]) * 95 // 100,
        )
    except KeyError as err:
        raise LabError(f"`slurmd -C` did not report {err.args[0]}: {text.strip()}") from None

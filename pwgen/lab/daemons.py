"""The daemons of a node: munged everywhere, sshd and slurmctld on the login node,
slurmd on compute nodes. Each is found through its pid file in the node's /run.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.lab.nodes import node_file, run_in
from pwgen.lab.procs import alive, comm, in_netns, kill, wait_dead
from pwgen.lab.sitefiles import MUNGE_USER, log_file
from pwgen.lab.state import NodeRecord, SiteRecord
from pwgen.lab.wait import tcp_open, wait_until

SSH_PORT = 22
SLURMCTLD_PORT = 6817
MUNGE_SOCKET = "/run/munge/munge.socket.2"
# sinfo's long states of a node that answers and can run (or is running) jobs.
_READY_STATES = {"idle", "mixed", "allocated", "completing"}


@dataclass(frozen=True)
class Daemon:
    name: str  # also the process name in /proc/<pid>/comm
    roles: tuple[str, ...]
    pidfile: str  # inside the node

    def argv(self, node: NodeRecord) -> list[str]:
        if self.name == "munged":
            return [
                *("setpriv", f"--reuid={MUNGE_USER}", f"--regid={MUNGE_USER}", "--init-groups"),
                "/usr/sbin/munged",
                f"--log-file=/run/lab/log/munge/{node.name}.log",
                "--seed-file=/run/munge/munged.seed",
            ]
        if self.name == "sshd":
            log = f"/run/lab/log/{node.name}-sshd.log"
            return ["/usr/sbin/sshd", "-f", "/run/lab/etc/sshd_config", "-E", log]
        return [f"/usr/sbin/{self.name}"]


MUNGED = Daemon("munged", ("login", "compute"), "/run/munge/munged.pid")
SSHD = Daemon("sshd", ("login",), "/run/sshd.pid")
SLURMCTLD = Daemon("slurmctld", ("login",), "/run/slurmctld.pid")
SLURMD = Daemon("slurmd", ("compute",), "/run/slurmd.pid")
# In start order: munge before Slurm, slurmctld before the slurmds register.
DAEMONS = (MUNGED, SLURMCTLD, SSHD, SLURMD)


def pid_of(node: NodeRecord, daemon: Daemon) -> int | None:
    """The daemon's pid if it is running in this node, else None."""
    if node.holder_pid is None:
        return None
    try:
        text = node_file(node.holder_pid, daemon.pidfile).read_text(encoding="utf-8")
        pid = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if alive(pid) and in_netns(pid, node.netns) and comm(pid) == daemon.name:
        return pid
    return None


def start(node: NodeRecord, daemon: Daemon) -> None:
    """Start the daemon in the node (it forks into the background by itself)."""
    assert node.holder_pid is not None
    # A stale pid file makes slurmctld look for (and signal) a process that is gone.
    node_file(node.holder_pid, daemon.pidfile).unlink(missing_ok=True)
    run_in(node, daemon.argv(node))


def ensure(node: NodeRecord, daemon: Daemon) -> bool:
    """Start the daemon unless it runs; True when it was (re)started."""
    if pid_of(node, daemon) is not None:
        return False
    start(node, daemon)
    return True


def stop(node: NodeRecord, daemon: Daemon) -> None:
    pid = pid_of(node, daemon)
    if pid is not None:
        kill(pid)
        wait_dead(pid)


def wait_started(node: NodeRecord, daemon: Daemon, site: SiteRecord, timeout: float = 20) -> None:
    """Wait until the daemon serves: its pid file, then its socket or TCP port."""
    hint = f" (see {log_file(Path(site.site_dir), node.name, daemon.name)})"
    wait_until(lambda: pid_of(node, daemon), f"{daemon.name} on {node.name}", timeout, hint)
    if daemon is MUNGED:
        assert node.holder_pid is not None
        socket = node_file(node.holder_pid, MUNGE_SOCKET)
        wait_until(socket.exists, f"munged's socket on {node.name}", timeout, hint)
    elif daemon is SSHD:
        port_open = lambda: tcp_open(site.login_ip, SSH_PORT)  # noqa: E731
        wait_until(port_open, f"sshd on {site.login_ip}:{SSH_PORT}", timeout, hint)
    elif daemon is SLURMCTLD:
        port_open = lambda: tcp_open(site.login_ip, SLURMCTLD_PORT)  # noqa: E731
        wait_until(port_open, f"slurmctld on {node.name}", timeout, hint)


def node_states(site: SiteRecord) -> dict[str, str]:
    """Slurm's state of each compute node, asked on the login node."""
    out = run_in(site.login, ["sinfo", "-h", "-N", "-o", "%N %T"], timeout=15, check=False)
    states = {}
    for line in out.splitlines():
        name, _, state = line.partition(" ")
        states[name] = state.strip()
    return states


def wait_nodes_ready(sites: Sequence[SiteRecord], timeout: float = 60) -> None:
    """Wait until every compute node of every site is registered and usable."""
    deadline = time.monotonic() + timeout
    for site in sites:

        def ready(site: SiteRecord = site) -> bool:
            states = node_states(site)
            return all(states.get(node.name) in _READY_STATES for node in site.computes)

        left = max(deadline - time.monotonic(), 1.0)
        try:
            wait_until(ready, f"the compute nodes of {site.label} to be idle", left)
        except LabError as err:
            raise LabError(f"{err}: sinfo says {node_states(site)}") from None

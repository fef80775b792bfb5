"""Nodes: one holder process per node keeps its hostname and mounts; daemons join it.

The holder is started as `nsenter --net=/run/netns/X unshare --uts --mount -- sh
node-init.sh` (not `ip netns exec`, which remounts /sys and hides cgroups from
slurmd). node-init.sh sets the hostname, mounts a fresh /run and binds the site's
/etc/hosts, /etc/slurm, /etc/munge and /home, then sleeps forever. Every daemon
of the node is started with `nsenter --target <holder>` so that all of them, and
every ssh session, see the same node.
"""

import subprocess
from collections.abc import Sequence
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.lab.procs import NETNS_DIR, alive, comm, in_netns
from pwgen.lab.state import NodeRecord
from pwgen.lab.system import run
from pwgen.lab.wait import wait_until

READY_FILE = "/run/.lab-node-ready"
INIT_SCRIPT = "etc/node-init.sh"


def node_file(holder_pid: int, path: str) -> Path:
    """A path inside the node's mount namespace, seen from the root namespace."""
    return Path(f"/proc/{holder_pid}/root") / path.lstrip("/")


def holder_alive(node: NodeRecord) -> bool:
    pid = node.holder_pid
    return pid is not None and alive(pid) and in_netns(pid, node.netns) and comm(pid) == "sleep"


def init_log(site_dir: Path, node: NodeRecord) -> Path:
    return site_dir / "log" / f"{node.name}-init.log"


def start_holder(node: NodeRecord, site_dir: Path) -> int:
    """Start the node's holder; returns its pid (ready only after `wait_holders`)."""
    argv = [
        "nsenter",
        f"--net={NETNS_DIR / node.netns}",
        "unshare",
        "--uts",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        str(site_dir / INIT_SCRIPT),
        node.name,
        str(site_dir),
        READY_FILE,
    ]
    with init_log(site_dir, node).open("w") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # not killed with the terminal that ran `lab up`
        )
    return process.pid


def wait_holders(
    nodes: Sequence[NodeRecord], site_dirs: Sequence[Path], timeout: float = 20
) -> None:
    """Wait until every holder has set up its node; a dead one fails with its log."""
    for node, site_dir in zip(nodes, site_dirs, strict=True):
        pid = node.holder_pid
        assert pid is not None

        def ready(pid: int = pid, node: NodeRecord = node, site_dir: Path = site_dir) -> bool:
            if not alive(pid):
                log = init_log(site_dir, node)
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise LabError(f"node {node.name} failed to start: {tail[0]} (see {log})")
            return node_file(pid, READY_FILE).exists()

        wait_until(ready, f"node {node.name} to set up", timeout)


def enter(node: NodeRecord) -> list[str]:
    """The argv prefix that runs a command inside the node (all its namespaces)."""
    if node.holder_pid is None:
        raise LabError(f"node {node.name} is not running: run `pwgen lab up`")
    return ["nsenter", f"--target={node.holder_pid}", "--net", "--mount", "--uts", "--"]


def run_in(node: NodeRecord, argv: Sequence[str], timeout: float = 30, check: bool = True) -> str:
    return run([*enter(node), *argv], timeout=timeout, check=check)

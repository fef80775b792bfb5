"""Processes: alive or not, which namespace they are in, killing a namespace empty.

Zombies are reaped slowly on these machines (PID 1 is not a real init), so a
zombie counts as dead everywhere here.
"""

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.poll import poll

NETNS_DIR = Path("/run/netns")


def alive(pid: int | None) -> bool:
    """Whether `pid` is a running (not zombie, not dead) process."""
    if pid is None or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X", "x")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _inode(path: str | Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def netns_pids(names: Iterable[str]) -> dict[str, list[int]]:
    """Live pids in each named network namespace (what `ip netns pids` lists), in one scan."""
    wanted = {}
    for name in names:
        inode = _inode(NETNS_DIR / name)
        if inode is not None:
            wanted[inode] = name
    found: dict[str, list[int]] = {name: [] for name in wanted.values()}
    if not wanted:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            owner = wanted.get(_inode(f"/proc/{entry}/ns/net") or (0, 0))
            if owner is not None and alive(int(entry)):
                found[owner].append(int(entry))
    return found


def in_netns(pid: int, name: str) -> bool:
    """Whether `pid` lives in network namespace `name` (guards against pid reuse)."""
    inode = _inode(NETNS_DIR / name)
    return inode is not None and _inode(f"/proc/{pid}/ns/net") == inode


def kill_netns_processes(
    names: Iterable[str], holders: Iterable[int | None] = (), timeout: float = 10
) -> None:
    """SIGKILL every process in the namespaces until none is left.

    A namespace is found by name and through its node's holder: someone may have
    run `ip netns del` while the node still ran. Loops because a dying sshd may
    still accept one more connection, and ssh ControlPersist leaves `sshd:
    user@notty` sessions that nobody else stops.
    """
    names = list(names)
    inodes = {_inode(NETNS_DIR / name) for name in names}
    inodes |= {_inode(f"/proc/{pid}/ns/net") for pid in holders if pid and comm(pid) == "sleep"}
    # Never our own namespace (the root one), whatever a reused pid points at.
    inodes -= {None, _inode("/proc/self/ns/net")}

    def all_gone() -> bool:
        pids = _pids_in(inodes)
        for pid in pids:
            kill(pid, signal.SIGKILL)
        return not pids

    if poll(all_gone, timeout, interval=0.01) is None:
        raise LabError(f"processes {_pids_in(inodes)} in {', '.join(names)} survive SIGKILL")


def _pids_in(inodes: set[tuple[int, int] | None]) -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _inode(f"/proc/{entry}/ns/net") in inodes and alive(int(entry))
    ]


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_dead(pid: int, timeout: float = 5) -> bool:
    return poll(lambda: not alive(pid), timeout, interval=0.01) is not None

"""Who uses a site's ssh master, across pwgen processes: only its last user stops it.

Two runs on the same site and user share one ControlMaster (same ControlPath). A run
that finishes must not `ssh -O exit` a master another live run still streams through,
whether it started that master or adopted it. So each user — a tunnel of a run, a
site-side run — holds a file in `<ControlPath>.users/`, next to the socket in the
private socket directory (pwgen.ssh.controldir), named after its process (pid and start
time, so a reused pid is not mistaken for it) and a counter (one process may hold
several). A user killed with -9 leaves its file behind: files of dead processes are
dropped when read.
"""

import contextlib
import itertools
import os
from pathlib import Path

_COUNTER = itertools.count()


def users_dir(control_path: str) -> Path:
    return Path(f"{control_path}.users")


def register(control_path: str) -> Path:
    """Record this process as a user of the master at `control_path`; returns the token."""
    directory = users_dir(control_path)
    token = directory / f"{os.getpid()}-{_start_time(os.getpid())}-{next(_COUNTER)}"
    while True:
        directory.mkdir(mode=0o700, exist_ok=True)
        try:
            token.touch(mode=0o600)
            return token
        except FileNotFoundError:  # the last user removed the directory just now
            continue


def register_process(control_path: str, pid: int) -> Path:
    """Record process `pid` (a master the user holds open: pwgen.ssh.hold) as a user; it
    counts as long as that process lives."""
    directory = users_dir(control_path)
    directory.mkdir(mode=0o700, exist_ok=True)
    token = directory / f"{pid}-{_start_time(pid)}-held"
    token.touch(mode=0o600)
    return token


def release_process(control_path: str, pid: int) -> None:
    """Drop the registration of process `pid` (pwgen.ssh.hold's close)."""
    with contextlib.suppress(FileNotFoundError):
        (users_dir(control_path) / f"{pid}-{_start_time(pid)}-held").unlink()


def release(token: Path) -> bool:
    """Drop this user; True when no live user of that master is left (stop it then)."""
    with contextlib.suppress(FileNotFoundError):
        token.unlink()
    if live_users(token.parent):
        return False
    with contextlib.suppress(OSError):  # not empty: someone registered meanwhile
        token.parent.rmdir()
    return True


def in_use(control_path: str) -> bool:
    """Whether a live pwgen process (this one included) is registered as the master's user."""
    return bool(live_users(users_dir(control_path)))


def live_users(directory: Path) -> list[Path]:
    """The tokens in `directory` whose process still runs (stale ones are removed)."""
    try:
        tokens = list(directory.iterdir())
    except FileNotFoundError:
        return []
    live = []
    for token in tokens:
        pid, _, rest = token.name.partition("-")
        started, _, _ = rest.partition("-")
        if pid.isdigit() and _start_time(int(pid)) == started:
            live.append(token)
        else:
            with contextlib.suppress(FileNotFoundError):
                token.unlink()
    return live


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when it does not run)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    # Field 22 of stat; index 19 after the command name; zombies are not users.
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else ""

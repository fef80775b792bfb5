"""The directory of the ssh ControlMaster sockets: this user's alone, or refused.

A master's socket is the site connection itself: whoever can connect to it runs
commands on the site as the user, and whoever put a socket there first gets what pwgen
sends (certificates, the worker client key). So the directory is checked every time
(`lstat`: not a symlink, a directory, owned by this uid, mode 0700), never trusted for
existing. It is `$XDG_RUNTIME_DIR/pwgen` when the user has a private runtime dir, else
`/tmp/pwgen-cm-<uid>` (short: a unix socket path must stay under ~104 bytes).
"""

import os
import stat
from pathlib import Path

from pwgen.ssh.errors import SshError

#: sun_path is 108 bytes on Linux, 104 on BSDs; ssh adds a temporary suffix while binding.
SOCKET_PATH_LIMIT = 104
#: Length of ssh's `%C` (a hex SHA1 of the connection) and the suffix ssh adds to it.
_SOCKET_NAME = 40 + 18


def control_dir() -> Path:
    """Where the sockets go: the private runtime dir if there is one, else /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and not private_dir_problems(Path(runtime)):
        candidate = Path(runtime) / "pwgen"
        if len(str(candidate)) + 1 + _SOCKET_NAME < SOCKET_PATH_LIMIT:
            return candidate
    return Path(f"/tmp/pwgen-cm-{os.getuid()}")


def ensure_control_dir(path: Path | None = None) -> Path:
    """Create the socket directory (0700) or check the one there; SshError if not private."""
    path = control_dir() if path is None else path
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked below, as if someone else had made it
    except OSError as err:
        raise SshError(f"{path}: cannot create the ssh socket directory: {err.strerror}") from None
    problems = private_dir_problems(path)
    if problems:
        raise SshError(
            f"{path}: {'; '.join(problems)}: another user may have made it to catch pwgen's "
            "ssh connections; remove it (or set XDG_RUNTIME_DIR to a private directory)"
        )
    return path


def private_dir_problems(path: Path) -> list[str]:
    """Why `path` is not a directory only this user can use ([] when it is)."""
    try:
        info = os.lstat(path)
    except OSError as err:
        return [f"cannot be checked ({err.strerror})"]
    if stat.S_ISLNK(info.st_mode):
        return ["is a symbolic link"]
    problems = [] if stat.S_ISDIR(info.st_mode) else ["is not a directory"]
    if info.st_uid != os.getuid():
        problems.append(f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})")
    if info.st_mode & 0o077:
        problems.append(f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700")
    return problems

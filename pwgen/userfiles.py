"""Files users hand to pwgen (sites files): regular files only, at most 1 MiB.

A FIFO, a device or a directory is refused from its `stat`, before it is opened (a
FIFO would block the open, `/dev/zero` would never end). The file is then opened
non-blocking and checked again through the open descriptor (it may have been
swapped in between), and never read past the cap.
"""

import os
import stat
from pathlib import Path

from pwgen.errors import PwgenError, WorkflowError

MAX_BYTES = 1 << 20

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class _Unreadable(Exception):
    """Why a user file is refused (becomes the caller's PwgenError)."""


def read_user_text(path: Path, what: str, error: type[PwgenError], limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, or one `error`."""
    try:
        _check(os.stat(path), limit)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            _check(os.fstat(file.fileno()), limit)
            data = file.read(limit + 1)
        _check_size(len(data), limit)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (_Unreadable, OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read {what}: {err}") from None


def _check(info: os.stat_result, limit: int) -> None:
    kind = stat.S_IFMT(info.st_mode)
    if kind != stat.S_IFREG:
        raise _Unreadable(f"not a regular file ({_KINDS.get(kind, 'a special file')})")
    _check_size(info.st_size, limit)


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise _Unreadable(f"larger than {describe_size(limit)}")


def describe_size(size: int) -> str:
    """`1048576` -> `1 MiB`; other sizes in bytes."""
    return f"{size >> 20} MiB" if size and size % (1 << 20) == 0 else f"{size} bytes"


def check_workflow(workflow: Path) -> None:
    """A workflow script: a readable regular file of valid Python; else a WorkflowError."""
    if not workflow.exists():
        raise WorkflowError(f"{workflow}: workflow script not found")
    if not workflow.is_file():
        raise WorkflowError(f"{workflow}: not a regular file: a workflow script is a Python file")
    try:
        compile(workflow.read_bytes(), str(workflow), "exec")
    except SyntaxError as err:
        where = f"{workflow}:{err.lineno}" if err.lineno else str(workflow)  # null bytes: None
        raise WorkflowError(f"{where}: not valid Python: {err.msg}") from None
    except (OSError, ValueError) as err:
        raise WorkflowError(f"{workflow}: cannot read workflow script: {err}") from None

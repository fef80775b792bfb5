"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

import os
import tempfile
from pathlib import Path

from pwgen.errors import OutputError


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a temporary file in the same directory.

    Raises OutputError (naming the path) when the directory is missing or not
    writable; nothing is left behind in that case.
    """
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: directory {directory} does not exist")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give the name of a file to write")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise OutputError(f"{path}: cannot write in {directory}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """The rename itself on disk (a machine crash right after keeps the new file)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a directory we may write but not open: the rename stands, unsynced
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)

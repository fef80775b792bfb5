"""Writing a file that came back from a site where the workflow asked for it: appended
to, or replacing it atomically (a reader sees the old file or the new one), one writer
at a time per path (two sites may append to one log)."""

import contextlib
import os
import shutil
import tempfile
import threading


def _process_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it; done once, at import
    os.umask(mask)
    return mask


#: Mode of a replaced file: what `open()` would have given it here.
FILE_MODE = 0o666 & ~_process_umask()

_TARGET_LOCKS: dict[str, threading.Lock] = {}
_TARGET_LOCKS_LOCK = threading.Lock()


def deliver(source: str, target: str, append: bool) -> None:
    """Append `source`'s bytes to `target`, or replace `target` with them; the target's
    directory is made if missing (as Parsl's bash runner does for a stream)."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    with _TARGET_LOCKS_LOCK:
        lock = _TARGET_LOCKS.setdefault(target, threading.Lock())
    with lock:
        if append:
            with open(source, "rb") as data, open(target, "ab") as out:
                shutil.copyfileobj(data, out)
            return
        fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
                shutil.copyfileobj(data, out)
            os.chmod(temporary, FILE_MODE)
            os.replace(temporary, target)
        except BaseException:
            remove(temporary)
            raise


def remove(path: str) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

"""One teardown of a run at a time: the guard's (controller died) and `--resume`'s."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pwgen.layout import RunLayout


@contextmanager
def run_teardown_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's teardown lock (waits for a teardown of the run under way)."""
    try:
        fd = os.open(RunLayout(run_dir).teardown_lock, os.O_WRONLY | os.O_CREAT, 0o600)
    except FileNotFoundError:  # no such run dir: the caller reports the run as unknown
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

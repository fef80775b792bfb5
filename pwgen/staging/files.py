"""`file://` data of tasks on a site: copied there and back by this machine, with rsync.

The transfers are Parsl tasks of their own on the DFK's internal executor (threads
here, as Parsl's Globus staging does; `pwgen.parsl_internals.internal_task`), so the
DFK orders them: a task starts after its inputs have arrived on its site, and an
output's DataFuture completes after the output has come back.
"""

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from parsl.app.futures import DataFuture
from parsl.data_provider.files import File
from parsl.data_provider.staging import Staging
from parsl.utils import RepresentationMixin

from pwgen.parsl_internals import internal_task
from pwgen.staging.errors import StagingError
from pwgen.staging.intask import make_output_parent, require_staged_input
from pwgen.staging.release import release_site
from pwgen.staging.rsync import Rsync
from pwgen.staging.site import SiteDirs
from pwgen.staging.streams import is_stream_file

if TYPE_CHECKING:
    from parsl.data_provider.data_manager import DataManager

logger = logging.getLogger(__name__)


class SiteFileStaging(Staging, RepresentationMixin):
    """`file://` Files (and plain paths) of tasks on a pwgen site executor.

    A File names a path on this machine (the controller). For a task on a site:

    - input (`inputs=[File(...)]`, or any argument): before the task, this machine
      copies the file or directory to the run's work dir on the site,
      `<remote_dir>/<run_id>/<label>/staging/in/<key>/<name>`, with rsync over the
      site's ssh master (compute nodes need no route back), and the task gets that
      path (`File.local_path`: what `filepath`, `str()` and `os.fspath()` give on the
      worker). A path staged again is copied again only if it changed.
    - output (`outputs=[File(...)]`, a bash app's `stdout=`/`stderr=` Files): the task
      writes to `.../staging/out/<task id>/<key>/<name>` (its directory is made in the task);
      after the task this machine copies the file or directory back to the path the
      File names (its parent made if missing). The output's DataFuture completes
      when it has arrived.

    A failed copy raises `pwgen.staging.StagingError` naming both paths and rsync's own
    message: a failed input fails the task (Parsl's `DependencyError`, caused by it), a
    failed output fails that output's DataFuture. The work dir is removed when the
    executor shuts down (`release_site`). On an executor that is not a pwgen site
    executor, Files are used in place, as with Parsl's `NoOpFileStaging`.

    rsync : str (default "rsync")
        The rsync executable on this machine (the site needs one on PATH too).
    io_timeout : int (default 300)
        Seconds a transfer may go without any data before it is abandoned.
    """

    #: The Files it stages (SiteZipStaging, a subclass, stages zip: ones).
    SCHEME: ClassVar[str] = "file"

    def __init__(self, rsync: str = "rsync", io_timeout: int = 300) -> None:
        self.rsync = rsync
        self.io_timeout = io_timeout

    def can_stage_in(self, file: File) -> bool:
        return bool(file.scheme == self.SCHEME)

    def can_stage_out(self, file: File) -> bool:
        return bool(file.scheme == self.SCHEME)

    def stage_in(
        self, dm: "DataManager", executor: str, file: File, parent_fut: Future[Any] | None
    ) -> DataFuture | None:
        dirs = SiteDirs.of(dm.dfk.executors[executor])
        if dirs is None:
            return None
        dirs.note_used()
        origin = os.path.abspath(file.path)
        file.local_path = dirs.input_path(origin)
        push = Push(dirs, self.rsync_tool(), origin, file.local_path)
        return submit_stage_in(dm, push, file, parent_fut)

    def replace_task(
        self, dm: "DataManager", executor: str, file: File, func: Callable[..., Any]
    ) -> Callable[..., Any] | None:
        if file.local_path is None or SiteDirs.of(dm.dfk.executors[executor]) is None:
            return None
        wrapped: Callable[..., Any] = require_staged_input(func, file.local_path, self.origin(file))
        return wrapped

    def stage_out(
        self, dm: "DataManager", executor: str, file: File, app_fu: Future[Any]
    ) -> Future[Any] | None:
        dirs = SiteDirs.of(dm.dfk.executors[executor])
        if dirs is None or is_stream_file(app_fu, file):
            return None
        dirs.note_used()
        target = os.path.abspath(file.path)
        file.local_path = dirs.output_path(app_fu.tid, target)  # type: ignore[attr-defined]
        pull = Pull(dirs, self.rsync_tool(), file.local_path, target, app_fu)
        return submit_stage_out(dm, pull, app_fu)

    def replace_task_stage_out(
        self, dm: "DataManager", executor: str, file: File, func: Callable[..., Any]
    ) -> Callable[..., Any] | None:
        if file.local_path is None or SiteDirs.of(dm.dfk.executors[executor]) is None:
            return None
        wrapped: Callable[..., Any] = make_output_parent(func, file.local_path)
        return wrapped

    def origin(self, file: File) -> str:
        """Where a staged input came from, as the task's missing-input error says it."""
        return f"{os.path.abspath(file.path)} on the controller"

    def release_site(self, executor: Any) -> None:
        """At the executor's shutdown: remove the run's work dir for data on the site."""
        release_site(executor)

    def rsync_tool(self) -> Rsync:
        """How this provider runs rsync (the site executor's stream copies use it too)."""
        return Rsync(self.rsync, self.io_timeout)


# --- the transfers (run on the DFK's internal executor) ----------------------------------


class Transfer(Protocol):
    """One copy between this machine and a site (Push, Pull, and zipfiles' own)."""

    def run(self) -> None: ...


def submit_stage_in(
    dm: "DataManager", transfer: Transfer, file: File, parent_fut: Future[Any] | None
) -> DataFuture:
    """`transfer` as the stage-in task of `file`: its DataFuture, done when it has run."""
    future = internal_task(dm.dfk, pwgen_stage_in)(transfer, parent_fut=parent_fut, outputs=[file])
    staged: DataFuture = future.outputs[0]
    return staged


def submit_stage_out(dm: "DataManager", transfer: Transfer, app_fu: Future[Any]) -> Future[Any]:
    """`transfer` as a stage-out task: it runs after the app (`app_fu`) has succeeded."""
    done: Future[Any] = internal_task(dm.dfk, pwgen_stage_out)(transfer, app_fu)
    return done


@dataclass(frozen=True)
class Push:
    """Copy `local` (file or directory) to `remote` on the site, unless it is there."""

    dirs: SiteDirs
    rsync: Rsync
    local: str
    remote: str

    def run(self) -> None:
        key = f"{self.dirs.host}:{self.remote}"
        with _destination_lock(key):
            signature = _file_signature(self.local)
            if signature is not None and _PUSHED.get(key) == signature:
                return  # this very file is on the site already
            self.rsync.push(self.dirs, self.local, self.remote)
            if signature is not None:
                _PUSHED[key] = signature
        logger.info("staged %s to %s", self.local, self.dirs.where(self.remote))


@dataclass(frozen=True)
class Pull:
    """Copy `remote` (file or directory) from the site to `local` here."""

    dirs: SiteDirs
    rsync: Rsync
    remote: str
    local: str
    app_fu: Future[Any] | None = field(default=None, compare=False)  # the task's

    def run(self) -> None:
        if ran_from_memo(self.app_fu):
            # The task did not run again; an earlier try brought its output here.
            if not os.path.lexists(self.local):
                task = getattr(self.app_fu, "tid", "?")
                raise StagingError(
                    f"{self.local}: the memoized result of task {task} did not run again, "
                    "and its output is no longer here"
                )
            return
        self.rsync.pull(self.dirs, self.remote, self.local)
        logger.info("staged %s back to %s", self.dirs.where(self.remote), self.local)


def ran_from_memo(app_fu: Future[Any] | None) -> bool:
    """Whether the task's result came from Parsl's memo table or a checkpoint (it did
    not run: there is nothing of it on the site to copy back)."""
    record = getattr(app_fu, "task_record", {})
    return bool(record.get("from_memo"))


def pwgen_stage_in(
    transfer: Transfer,
    parent_fut: Future[Any] | None = None,
    outputs: Sequence[File] = (),
    **parsl_keywords: Any,
) -> None:
    """The stage-in task: after `parent_fut` (the File's producer, if any), copy it."""
    transfer.run()


def pwgen_stage_out(transfer: Transfer, app_fu: Any, **parsl_keywords: Any) -> None:
    """The stage-out task: after the app (`app_fu`, a dependency), copy its output back."""
    transfer.run()


# Files already copied, by destination: (size, mtime, inode) of the local file then.
_PUSHED: dict[str, tuple[int, int, int]] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _destination_lock(key: str) -> threading.Lock:
    """One copy at a time to one destination (tasks sharing an input wait for it)."""
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def _file_signature(path: str) -> tuple[int, int, int] | None:
    """What identifies a regular file's content cheaply; None for directories (and errors)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None  # rsync reports it, with its own message
    if not S_ISREG(stat.st_mode):
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino

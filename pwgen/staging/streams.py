"""A bash app's stdout and stderr on a site: written there, brought back before the task
completes.

A bash app names its streams with paths on the controller (`stdout="greet.out"`,
`("log", "a")`, `File(...)`, or what `parsl.AUTO_LOGNAME` became). The site cannot
write there, so the site executor's `submit` gives the worker paths of its own in the
run's work dir for data (`<staging>/streams/<key>/stdout`, a new key per try), and,
once the try has run, this machine copies them back and delivers them where the user
asked: a file opened with `w` is replaced, one opened with `a` (Parsl's default for a
plain path) is appended to. Only then does the executor's future complete, so the
app's future never completes before its streams are here.

A try that did not run on the site (its manager or block lost, the site given up:
`pwgen.failover.errors.is_site_failure`) brings nothing back: a task moved to another
site gets its streams from the site that ran it, never from both. A failed app still
brings its streams back (that is how users debug), and its exception gets a note
naming where they are.

The copies of one site go in batches: one rsync (over the site's master) brings back
every stream of the tries that finished while the previous batch was copying.
"""

import logging
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from parsl.app.errors import RemoteExceptionWrapper
from parsl.data_provider.files import File
from parsl.executors.high_throughput.executor import HTEXFuture
from parsl.utils import get_std_fname_mode

from pwgen.failover.errors import is_site_failure
from pwgen.staging.delivery import deliver, remove
from pwgen.staging.errors import StagingError
from pwgen.staging.rsync import Rsync
from pwgen.staging.site import SiteDirs

logger = logging.getLogger(__name__)

#: The keyword arguments of a bash app that name its streams.
STREAM_KEYWORDS = ("stdout", "stderr")


@dataclass(frozen=True)
class StreamCopy:
    """One stream file of a try: where the worker writes it, where it is delivered."""

    keywords: tuple[str, ...]  # ("stdout",), or both when they name one file
    target: str  # the absolute path on this machine
    append: bool  # opened with "a": appended to the target, else it replaces it
    relative: str  # its path under the site's streams dir (and the local spool)


def plan_streams(
    streams_dir: str, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], list[StreamCopy]]:
    """The task's keyword arguments with site paths for its streams, and their copies.

    Each stream keeps its form (a path, a `(path, mode)` tuple, a `File`) so the app's
    command sees what it would see locally; two streams that name one file share one on
    the site too. Relative paths are resolved against this process's working directory.
    """
    key = uuid.uuid4().hex[:16]
    rewritten = dict(kwargs)
    copies: dict[str, StreamCopy] = {}
    for keyword in STREAM_KEYWORDS:
        spec = kwargs.get(keyword)
        parsed = _parse_stream(keyword, spec)
        if parsed is None:
            continue
        target, mode = parsed
        copy = copies.get(target)
        if copy is None:
            copy = StreamCopy((keyword,), target, mode.startswith("a"), f"{key}/{keyword}")
        else:
            copy = StreamCopy((*copy.keywords, keyword), target, copy.append, copy.relative)
        copies[target] = copy
        rewritten[keyword] = _site_spec(spec, posixpath.join(streams_dir, copy.relative), mode)
    return rewritten, list(copies.values())


def streams_made_absolute(kwargs: dict[str, Any]) -> None:
    """Resolve a task's relative stream paths now, at the app call (the site executor
    would otherwise resolve them at launch, after the task's dependencies, against
    whatever the working directory is then)."""
    for keyword in STREAM_KEYWORDS:
        spec = kwargs.get(keyword)
        if isinstance(spec, str) and spec and not os.path.isabs(spec):
            kwargs[keyword] = os.path.abspath(spec)
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            kwargs[keyword] = (os.path.abspath(spec[0]), spec[1])


def _parse_stream(keyword: str, spec: Any) -> tuple[str, str] | None:
    """(absolute target here, mode) of a stream spec; None when pwgen leaves it alone."""
    if spec is None:
        return None
    if isinstance(spec, File):
        if spec.scheme != "file":
            return None  # s3:// and friends: their staging provider handles them
        return os.path.abspath(spec.path), "w"
    name, mode = get_std_fname_mode(keyword, spec)  # Parsl's own reading (BadStdStreamFile)
    return os.path.abspath(name), mode


def _site_spec(spec: Any, remote: str, mode: str) -> Any:
    """`spec`'s form with the site path in it."""
    if isinstance(spec, File):
        return File(remote)
    if isinstance(spec, tuple):
        return (remote, mode)
    return remote


# --- bringing them back -----------------------------------------------------------------


@dataclass
class _Try:
    """One finished try whose streams are to come back."""

    copies: list[StreamCopy]
    inner: Future[Any]
    outer: Future[Any]
    app_error: BaseException | None = field(default=None)


class StreamReturn:
    """Brings back the streams of one site executor's tries, a batch per rsync."""

    def __init__(self, dirs: SiteDirs, rsync: Rsync, spool_parent: str) -> None:
        self.dirs = dirs
        self.rsync = rsync
        self.streams_dir = posixpath.join(dirs.root, "streams")
        os.makedirs(spool_parent, exist_ok=True)
        self._spool = tempfile.mkdtemp(prefix="streams-", dir=spool_parent)  # 0700
        self._pending: list[_Try] = []
        self._stopping = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"pwgen-streams-{dirs.label}", daemon=True
        )
        self._thread.start()

    def submit(
        self,
        submit: Callable[..., Future[Any]],
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> Future[Any]:
        """`submit(func, resource_specification, *args, **kwargs)`, the task's streams
        on the site; the future returned completes once they are back here."""
        site_kwargs, copies = plan_streams(self.streams_dir, kwargs)
        if not copies:
            return submit(func, resource_specification, *args, **kwargs)
        self.dirs.note_used()
        inner = submit(func, resource_specification, *args, **site_kwargs)
        outer: Future[Any] = (  # HTEX's carries the executor's task id, which the DFK logs
            HTEXFuture(inner.parsl_executor_task_id) if isinstance(inner, HTEXFuture) else Future()
        )
        inner.add_done_callback(lambda done: self._finished(_Try(copies, done, outer)))
        return outer

    def stop(self) -> None:
        """No more copies (the executor shuts down): tries still waiting fail; the
        thread ends after the batch it is copying, if any."""
        with self._wake:
            self._stopping = True
            left, self._pending = self._pending, []
            self._wake.notify()
        for attempt in left:
            _complete(attempt, StagingError(f"site {self.dirs.label} shut down first"))
        # A batch still copying ends with its rsync (stopped by release_site).

    def _finished(self, attempt: _Try) -> None:
        """The try is done (executor's thread): queue its copy unless it never ran."""
        error = _try_error(attempt.inner)
        if error is not None and is_site_failure(error):
            attempt.outer.set_exception(error)  # nothing ran there: nothing to bring
            return
        attempt.app_error = error
        with self._wake:
            if not self._stopping:
                self._pending.append(attempt)
                self._wake.notify()
                return
        _complete(attempt, StagingError(f"site {self.dirs.label} shut down first"))

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending:
                    shutil.rmtree(self._spool, ignore_errors=True)
                    return
                batch, self._pending = self._pending, []
            self._bring_back(batch)

    def _bring_back(self, batch: list[_Try]) -> None:
        """One rsync for the whole batch, then each try's streams delivered."""
        relative = [copy.relative for attempt in batch for copy in attempt.copies]
        try:
            self.rsync.pull_listed(self.dirs, self.streams_dir, relative, self._spool)
            failed: StagingError | None = None
        except StagingError as err:
            failed = err
        for attempt in batch:
            try:
                _complete(attempt, failed or self._deliver_all(attempt))
            except BaseException as err:  # never leave a task waiting for ever
                attempt.outer.set_exception(err)

    def _deliver_all(self, attempt: _Try) -> StagingError | None:
        for copy in attempt.copies:
            spooled = os.path.join(self._spool, copy.relative)
            try:
                if os.path.exists(spooled):  # a command that failed early wrote none
                    deliver(spooled, copy.target, copy.append)
            except OSError as err:
                return StagingError(f"{_names(copy)} could not be written to {copy.target}: {err}")
            finally:
                remove(spooled)
            if attempt.app_error is not None:
                attempt.app_error.add_note(
                    f"pwgen: the app's {_names(copy)} is in {copy.target} "
                    f"(brought back from site {self.dirs.label})"
                )
        return None


def _try_error(inner: Future[Any]) -> BaseException | None:
    """The try's failure: raised by the executor, or the app's, shipped as a value."""
    if inner.cancelled():
        return StagingError("the task was cancelled")
    error = inner.exception()
    if error is not None:
        return error
    result = inner.result()
    if isinstance(result, RemoteExceptionWrapper):
        try:
            result.reraise()
        except BaseException as raised:
            return raised
    return None


def _complete(attempt: _Try, copy_failure: StagingError | None) -> None:
    """The outer future gets the try's own outcome; a failed copy fails a task that
    succeeded (the app's own error stays first when it failed)."""
    if attempt.app_error is not None:
        if copy_failure is not None:
            attempt.app_error.add_note(f"pwgen: its streams did not come back: {copy_failure}")
        attempt.outer.set_exception(attempt.app_error)
    elif copy_failure is not None:
        attempt.outer.set_exception(copy_failure)
    else:
        attempt.outer.set_result(attempt.inner.result())


def _names(copy: StreamCopy) -> str:
    return " and ".join(copy.keywords)


# --- one per site executor ----------------------------------------------------------------

_RETURNS: dict[str, StreamReturn] = {}
_RETURNS_LOCK = threading.Lock()


def submit_with_streams(
    executor: Any,
    submit: Callable[..., Future[Any]],
    func: Callable[..., Any],
    resource_specification: dict[str, Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> Future[Any]:
    """A site executor's submit (`submit`, its parent's): a task that names a stdout or
    stderr (a bash app) gets them on the site and back before its future completes."""
    if not any(kwargs.get(keyword) is not None for keyword in STREAM_KEYWORDS):
        return submit(func, resource_specification, *args, **kwargs)
    return _stream_return(executor).submit(submit, func, resource_specification, args, kwargs)


def is_stream_file(app_fu: Any, file: File) -> bool:
    """Whether `file` is the task's `stdout=`/`stderr=` File, which the site executor
    brings back itself, also when the app fails (SiteFileStaging leaves it alone).

    Parsl asks for a stream File's stage-out while the task's kwargs still hold the
    File it was given (`file` is a clean copy of it)."""
    kwargs = getattr(app_fu, "task_record", {}).get("kwargs", {})
    return any(
        isinstance(kwargs.get(keyword), File) and kwargs[keyword].url == file.url
        for keyword in STREAM_KEYWORDS
    )


def _stream_return(executor: Any) -> StreamReturn:
    """The started site executor's `StreamReturn`, made at its first task with streams
    (its spool is in the executor's run directory here)."""
    dirs = SiteDirs.of(executor)
    if dirs is None:
        raise TypeError(f"{executor!r} is not a pwgen site executor")
    with _RETURNS_LOCK:
        found = _RETURNS.get(dirs.root)
        if found is None:
            spool_parent = os.path.join(executor.run_dir, executor.label)
            found = StreamReturn(dirs, _site_rsync(executor), spool_parent)
            _RETURNS[dirs.root] = found
        return found


def _site_rsync(executor: Any) -> Rsync:
    """The rsync of the executor's `SiteFileStaging` (its defaults if it has none)."""
    for staging in getattr(executor, "storage_access", None) or ():
        rsync_tool = getattr(staging, "rsync_tool", None)
        if callable(rsync_tool):
            rsync: Rsync = rsync_tool()
            return rsync
    return Rsync()


def stop_stream_return(dirs: SiteDirs) -> None:
    """The site executor shuts down: its stream copies end (release_site)."""
    with _RETURNS_LOCK:
        found = _RETURNS.pop(dirs.root, None)
    if found is not None:
        found.stop()

"""`zip:` Files of tasks on a site: members of a zip archive on this machine.

`File("zip:/path/archive.zip/inside/name")` names the member `inside/name` of the
archive `/path/archive.zip`, as with Parsl's `ZipFileStaging`. Parsl's provider
reads and writes the member in the executor's `working_dir`, which a site does not
share with this machine; here the member travels like a `file://` File (files.py):

- output: the task writes `.../staging/out/<task id>/<key>/<name>` on the site; after it,
  this machine copies that back (rsync) into a private directory next to the archive
  and adds it to the archive (a directory: each file below it, under the member name).
- input: this machine extracts the member (a directory: the members below it) into a
  private temporary directory and copies it to `.../staging/in/<key>/<name>` on the
  site (key: a hash of the zip: URL); the task gets that path.

The archive is read and written under Parsl's own lock (`<archive>.lock`, filelock),
so tasks writing one archive take turns, with Parsl's provider too. A memoized task
adds nothing: its output went into the archive when it first ran. On an executor that
is not a pwgen site, Parsl's `ZipFileStaging` stages the File.
"""

import contextlib
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import filelock
from parsl.app.futures import DataFuture
from parsl.data_provider.files import File
from parsl.data_provider.zip import ZipFileStaging, zip_path_split

from pwgen.staging.errors import StagingError
from pwgen.staging.files import (
    Pull,
    Push,
    SiteFileStaging,
    ran_from_memo,
    submit_stage_in,
    submit_stage_out,
)
from pwgen.staging.rsync import Rsync
from pwgen.staging.site import SiteDirs

if TYPE_CHECKING:
    from parsl.data_provider.data_manager import DataManager

#: What a zip: File looks like (errors show it).
ZIP_FORM = "zip:/path/archive.zip/inside/name"
#: Parsl's provider, for executors that are not pwgen sites (stateless; untyped).
PARSL_ZIP_STAGING: Any = ZipFileStaging()


@dataclass(frozen=True)
class ZipMember:
    """A member (file or directory) of a zip archive on this machine."""

    archive: str  # absolute path
    member: str  # its name inside, '/'-separated, without leading or trailing '/'

    @property
    def url(self) -> str:
        return f"zip:{self.archive}/{self.member}"


def zip_member(file: File) -> ZipMember:
    """The archive and member a zip: File names; StagingError when it names none."""
    if file.netloc:
        raise StagingError(
            f"{file.url}: a zip: File names an archive on this machine, not on host "
            f"{file.netloc!r} (write {ZIP_FORM})"
        )
    archive, member = zip_path_split(file.path)
    member = member.strip("/")
    parts = member.split("/")
    if ".zip/" not in file.path or any(part in ("", ".", "..") for part in parts):
        raise StagingError(f"{file.url}: names no member of a .zip archive (write {ZIP_FORM})")
    return ZipMember(os.path.abspath(archive), member)


class SiteZipStaging(SiteFileStaging):
    """`zip:` Files of tasks on a pwgen site executor (see the module docstring).

    The member travels as SiteFileStaging's Files do (rsync over the site's ssh
    master, same layout on the site, same StagingError on a failed copy); a missing
    archive or member fails the task's input the same way, naming both.

    rsync, io_timeout: as for SiteFileStaging.
    """

    SCHEME = "zip"

    def stage_in(
        self, dm: "DataManager", executor: str, file: File, parent_fut: Future[Any] | None
    ) -> DataFuture | None:
        zipped = zip_member(file)
        dirs = SiteDirs.of(dm.dfk.executors[executor])
        if dirs is None:
            staged: DataFuture | None = PARSL_ZIP_STAGING.stage_in(dm, executor, file, parent_fut)
            return staged
        dirs.note_used()
        file.local_path = dirs.input_path(zipped.url)
        extract = ZipIn(zipped, dirs, self.rsync_tool(), file.local_path)
        return submit_stage_in(dm, extract, file, parent_fut)

    def stage_out(
        self, dm: "DataManager", executor: str, file: File, app_fu: Future[Any]
    ) -> Future[Any] | None:
        zipped = zip_member(file)
        dirs = SiteDirs.of(dm.dfk.executors[executor])
        if dirs is None:
            done: Future[Any] | None = PARSL_ZIP_STAGING.stage_out(dm, executor, file, app_fu)
            return done
        dirs.note_used()
        file.local_path = dirs.output_path(app_fu.tid, zipped.url)  # type: ignore[attr-defined]
        add_back = ZipOut(zipped, dirs, self.rsync_tool(), file.local_path, app_fu)
        return submit_stage_out(dm, add_back, app_fu)

    def origin(self, file: File) -> str:
        return f"{file.url} on the controller"


# --- the transfers (run on the DFK's internal executor) ----------------------------------


@dataclass(frozen=True)
class ZipIn:
    """Extract a member here, into a private directory, and copy it to `remote` on the site."""

    zipped: ZipMember
    dirs: SiteDirs
    rsync: Rsync
    remote: str

    def run(self) -> None:
        where = f"stage-in of {self.zipped.url} to {self.dirs.where(self.remote)}"
        with _failing(where), tempfile.TemporaryDirectory(prefix="pwgen-zip-") as private:
            local = extract(self.zipped, private, where)
            _run_for(self.zipped, Push(self.dirs, self.rsync, local, self.remote))


@dataclass(frozen=True)
class ZipOut:
    """Copy a task's output (`remote` on the site) back next to the archive, and add it."""

    zipped: ZipMember
    dirs: SiteDirs
    rsync: Rsync
    remote: str
    app_fu: Future[Any]

    def run(self) -> None:
        if ran_from_memo(self.app_fu):
            return  # the output went into the archive when the task first ran
        where = f"stage-out of {self.dirs.where(self.remote)} to {self.zipped.url}"
        parent = os.path.dirname(self.zipped.archive)
        with _failing(where):
            os.makedirs(parent, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".pwgen-zip-", dir=parent) as private:
                local = os.path.join(private, posixpath.basename(self.remote))
                _run_for(self.zipped, Pull(self.dirs, self.rsync, self.remote, local))
                add(self.zipped, local)


def extract(zipped: ZipMember, into: str, where: str) -> str:
    """Extract the member (a directory: the members below it) into `into`; its path."""
    with _locked(zipped), zipfile.ZipFile(zipped.archive) as archive:
        names = _member_names(archive, zipped.member)
        if not names:
            raise StagingError(f"{where} failed: no member {zipped.member} in {zipped.archive}")
        for name in names:
            archive.extract(name, into)
    return os.path.join(into, *zipped.member.split("/"))


def add(zipped: ZipMember, local: str) -> None:
    """Add a file (a directory: each file below it) to the archive, as the member."""
    members = [(local, zipped.member)]
    if os.path.isdir(local):
        members = [
            (path, posixpath.join(zipped.member, *os.path.relpath(path, local).split(os.sep)))
            for path in _files_below(local)
        ]
    with (
        _locked(zipped),
        zipfile.ZipFile(zipped.archive, "a", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for path, name in members:
            archive.write(path, arcname=name)


def _member_names(archive: zipfile.ZipFile, member: str) -> list[str]:
    names = archive.namelist()
    if member in names:
        return [member]
    return [name for name in names if name.startswith(f"{member}/")]


def _files_below(directory: str) -> list[str]:
    return sorted(
        os.path.join(parent, name) for parent, _, names in os.walk(directory) for name in names
    )


def _run_for(zipped: ZipMember, transfer: Push | Pull) -> None:
    """Run a copy through the private directory; its error names the zip: URL too."""
    try:
        transfer.run()
    except StagingError as err:
        raise StagingError(f"{zipped.url}: {err.message}") from None


def _locked(zipped: ZipMember) -> filelock.FileLock:
    """Parsl's ZipFileStaging lock of the archive (one writer or reader at a time)."""
    return filelock.FileLock(zipped.archive + ".lock")


@contextlib.contextmanager
def _failing(where: str) -> Iterator[None]:
    """The archive's own errors (missing, not a zip, no space) as one StagingError."""
    try:
        yield
    except FileNotFoundError as err:
        raise StagingError(f"{where} failed: no such file: {err.filename}") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise StagingError(f"{where} failed: {err}") from None

"""rsync between this machine and a site, over the site's ssh master.

Run on the controller only: compute nodes need no route back. `-rlpt` keeps
directories, symlinks, permissions and times but not owners (the site user owns the
site copy; whoever runs pwgen owns what comes back); a symlink that points out of what
is copied (or is the File itself) is copied as what it points to, which the other side
could not reach. The remote directory a copy goes into is made by the same connection
(`--rsync-path="mkdir -p DIR && rsync"`), so a copy costs one ssh session on the
shared master. A site copy mirrors this machine's (`--delete` inside it: a directory
staged again loses what was removed here); a copy back never deletes anything here.
"""

import contextlib
import os
import posixpath
import shlex
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pwgen.staging.errors import StagingError
from pwgen.staging.site import SiteDirs

#: rsync options of every transfer (see the module docstring); `-s` sends the file
#: names through rsync's protocol, never through the remote shell (spaces, `$`, `;`),
#: whatever the rsync versions.
RSYNC_OPTIONS = ("-rlpt", "-s", "--copy-unsafe-links")
#: Characters of rsync's message kept in an error (its last ones: the summary).
MESSAGE_LIMIT = 2000
#: Copies at once over one site's master. OpenSSH's default MaxSessions is 10 sessions
#: per connection, and the master also carries the provider's commands, the tunnel's
#: checks and the stream copies: the rest wait their turn instead of being refused
#: ("administratively prohibited").
COPIES_PER_SITE = 6
_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()

# rsync processes running now, by the site staging dir they copy to or from.
_RUNNING: dict[str, set["subprocess.Popen[str]"]] = {}
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class Rsync:
    """How this machine runs rsync.

    command
        The local rsync executable.
    io_timeout
        rsync's `--timeout`: seconds without any data before a transfer is abandoned.
    """

    command: str = "rsync"
    io_timeout: int = 300

    def argv(
        self,
        dirs: SiteDirs,
        source: str,
        destination: str,
        make: str | None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """The rsync command line; with `make`, a copy to the site: that remote directory
        is created first, and the copy mirrors the source."""
        options = [*RSYNC_OPTIONS, f"--timeout={self.io_timeout}", *extra]
        if make is not None:
            options += ["--delete", f"--rsync-path=mkdir -p -- {shlex.quote(make)} && rsync"]
        return dirs.ssh.rsync(self.command, options, source, destination)

    def push(self, dirs: SiteDirs, local: str, remote: str) -> None:
        """Copy a local file or directory to exactly `remote` on the site."""
        parent = posixpath.dirname(remote)
        if posixpath.basename(remote) != os.path.basename(local):
            raise ValueError(f"push keeps the name: {local} -> {remote}")
        argv = self.argv(dirs, local, dirs.ssh.remote_path(f"{parent}/"), make=parent)
        self._run(argv, f"stage-in of {local} to {dirs.where(remote)}", dirs)

    def pull(self, dirs: SiteDirs, remote: str, local: str) -> None:
        """Copy a file or directory from the site to exactly `local` here."""
        parent = os.path.dirname(local)
        if posixpath.basename(remote) != os.path.basename(local):
            raise ValueError(f"pull keeps the name: {remote} -> {local}")
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise StagingError(
                f"stage-out of {dirs.where(remote)} to {local} failed: {err}"
            ) from None
        argv = self.argv(dirs, dirs.ssh.remote_path(remote), f"{parent}/", make=None)
        self._run(argv, f"stage-out of {dirs.where(remote)} to {local}", dirs)

    def pull_listed(
        self, dirs: SiteDirs, remote_dir: str, relative: Sequence[str], local_dir: str
    ) -> None:
        """Copy the files `relative` to `remote_dir` on the site to the same relative
        paths in `local_dir`, in one transfer; files missing on the site are skipped."""
        fd, listing = tempfile.mkstemp(prefix=".rsync-list-", dir=local_dir)
        try:
            with os.fdopen(fd, "w") as names:
                names.write("".join(f"{name}\n" for name in relative))
            extra = ["--ignore-missing-args", f"--files-from={listing}"]
            source = dirs.ssh.remote_path(f"{remote_dir}/")
            argv = self.argv(dirs, source, f"{local_dir}/", make=None, extra=extra)
            what = f"copy of {len(relative)} file(s) from {dirs.where(remote_dir)} to {local_dir}"
            self._run(argv, what, dirs)
        finally:
            os.unlink(listing)

    def _run(self, argv: list[str], what: str, dirs: SiteDirs) -> None:
        with _site_slot(dirs.host):
            self._run_now(argv, what, dirs.root)

    def _run_now(self, argv: list[str], what: str, root: str) -> None:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # out of reach of the terminal's Ctrl-C
            )
        except OSError as err:  # no rsync here
            raise StagingError(f"{what} failed: cannot run {self.command}: {err}") from None
        with _running(root, proc):
            _, stderr = proc.communicate()  # rsync's --timeout bounds a stalled copy
        if proc.returncode != 0:
            message = " | ".join(line for line in stderr.strip().splitlines() if line)
            if len(message) > MESSAGE_LIMIT:
                message = "..." + message[-MESSAGE_LIMIT:]
            code = proc.returncode
            status = f"rsync exit {code}" if code >= 0 else f"rsync stopped by signal {-code}"
            raise StagingError(f"{what} failed ({status}): {message or 'no message'}")


@contextlib.contextmanager
def _site_slot(host: str) -> Iterator[None]:
    """One of the COPIES_PER_SITE slots of the site's master (its ssh Host alias)."""
    with _SLOTS_LOCK:
        slot = _SLOTS.setdefault(host, threading.BoundedSemaphore(COPIES_PER_SITE))
    with slot:
        yield


def stop_transfers(root: str) -> int:
    """Stop the copies to and from a site's staging dir (its executor shuts down)."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING.get(root, ()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # rsync and its ssh
    return len(procs)


@contextlib.contextmanager
def _running(root: str, proc: "subprocess.Popen[str]") -> Iterator[None]:
    with _RUNNING_LOCK:
        _RUNNING.setdefault(root, set()).add(proc)
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING[root].discard(proc)

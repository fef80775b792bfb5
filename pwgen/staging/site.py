"""Where a site executor's staged data lives, and how this machine reaches it.

Every pwgen site executor (`SiteHighThroughputExecutor`, `SiteMPIExecutor`) has, once
started, a run directory of its own on the site, `<remote_dir>/<run_id>/` (facts
`workdir`, shared with the compute nodes). Staged data goes below it, in the run's
work dir for data:

    <remote_dir>/<run_id>/<label>/staging/
        in/<key>/<name>        inputs copied from this machine (key: a hash of the
                               controller path, so one path is copied once per site)
        out/<task id>/<key>/<name>
                               what a task writes to an output File, copied back here
                               (key: a hash of the controller path, so two outputs
                               with one name do not collide)
        cloud/<uuid>/<name>    s3:// and gs:// objects of one task, removed after it

pwgen makes that directory (its name is new in every run) and removes it when the
executor shuts down (release.py); nothing is written on the site outside it. The site
is reached with the executor's own ssh config and `Host` alias, through the site's
ControlMaster (`ControlMaster=no`: use the running master, never become one).
"""

import hashlib
import posixpath
import threading
from dataclasses import dataclass
from typing import Any

from pwgen.ssh import SshCommand
from pwgen.staging.errors import StagingError

#: The run's work dir for data, inside the executor's per-run directory on the site.
STAGING_DIR = "staging"
#: File schemes whose data this machine copies to the one site a task was sent to.
SITE_COPIED_SCHEMES = ("file", "zip")

# Staging dirs a task of this process may have written to: a run that staged nothing
# costs no ssh call at shutdown.
_USED: set[str] = set()
_USED_LOCK = threading.Lock()


@dataclass(frozen=True)
class SiteDirs:
    """The staging layout of one started site executor, and its ssh access.

    label
        The executor's label (the site).
    ssh_config, host
        pwgen's ssh config on this machine and the site's `Host` alias in it.
    run_dir
        The executor's per-run directory on the site (`remote_run_dir`).
    """

    label: str
    ssh_config: str
    host: str
    run_dir: str

    @classmethod
    def of(cls, executor: Any) -> "SiteDirs | None":
        """The dirs of a pwgen site executor; None for any other executor (local data)."""
        ssh_config = getattr(executor, "ssh_config", None)
        host = getattr(executor, "host", None)
        if not isinstance(ssh_config, str) or not isinstance(host, str):
            return None
        run_dir = getattr(executor, "remote_run_dir", None)
        if not isinstance(run_dir, str):
            raise StagingError(
                f"site {executor.label}: the executor has not started (no run directory on "
                "the site yet): load the config before submitting tasks that stage files"
            )
        return cls(executor.label, ssh_config, host, run_dir)

    @property
    def root(self) -> str:
        """The run's work dir for data on the site."""
        return posixpath.join(self.run_dir, self.label, STAGING_DIR)

    def input_path(self, controller_path: str) -> str:
        """Where a controller file or directory (absolute, normalised) lands on the site."""
        return posixpath.join(self.root, "in", _key(controller_path), _name(controller_path))

    def output_path(self, task_id: int, controller_path: str) -> str:
        """Where task `task_id` writes the output this machine wants at `controller_path`."""
        key, name = _key(controller_path), _name(controller_path)
        return posixpath.join(self.root, "out", str(task_id), key, name)

    def cloud_dir(self, unique: str) -> str:
        """A directory of its own for one task's s3:// or gs:// object."""
        return posixpath.join(self.root, "cloud", unique)

    def note_used(self) -> None:
        """Data may land in this run's staging dir: remove it at shutdown."""
        with _USED_LOCK:
            _USED.add(self.root)

    @property
    def used(self) -> bool:
        with _USED_LOCK:
            return self.root in _USED

    def where(self, path: str) -> str:
        """`site:path`, as messages name a path on the site."""
        return f"{self.label}:{path}"

    @property
    def ssh(self) -> SshCommand:
        """The site's ssh and rsync command lines (rsync's `-e` joins its running master)."""
        return SshCommand(self.ssh_config, self.host)


def _key(path: str) -> str:
    """A short name of its own for a path (a directory per path: names never collide)."""
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def _name(path: str) -> str:
    """The last component of a path ('/' for the root itself)."""
    return posixpath.basename(path.rstrip("/")) or "root"

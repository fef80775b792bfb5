"""An object store's keys where a site's tasks read them: one private file per run.

The controller reads the keys (pwgen.objectstore.read_keys) and writes them, as an AWS
shared credentials file, into the run's work dir for data on the site:

    <remote_dir>/<run_id>/<label>/staging/objectstore/credentials   (dir 0700, file 0600)

The bytes travel on the ssh session's stdin through the site's master, never in a
command line; the file goes with the staging dir when the executor shuts down
(release.py) or when `pwgen teardown` cleans up after a crashed run. A task on an
executor that is not a pwgen site reads a private temporary file on this machine,
removed when Python exits.
"""

import atexit
import os
import posixpath
import shlex
import shutil
import tempfile
from typing import Any

from pwgen.objectstore import AccessKeys
from pwgen.staging.errors import StagingError
from pwgen.staging.site import SiteDirs

#: The directory of the keys inside the run's work dir for data.
KEYS_DIR = "objectstore"
KEYS_FILE = "credentials"


def ship_keys(executor: Any, keys: AccessKeys) -> str:
    """Write the keys where the executor's tasks run; returns the file's path there."""
    dirs = SiteDirs.of(executor)
    if dirs is None:
        return _local_keys(keys)
    tunnel = getattr(executor, "tunnel", None)
    if tunnel is None:
        raise StagingError(f"site {dirs.label}: no connection to write the object store's keys")
    dirs.note_used()  # removed with the staging dir at shutdown
    directory = posixpath.join(dirs.root, KEYS_DIR)
    path = posixpath.join(directory, KEYS_FILE)
    quoted_dir, quoted_path = shlex.quote(directory), shlex.quote(path)
    script = (
        f"umask 077 && mkdir -p -- {quoted_dir} && chmod 700 -- {quoted_dir} && "
        f"cat > {quoted_path}.part && mv -f -- {quoted_path}.part {quoted_path}"
    )
    code, _, err = tunnel.run(script, stdin=keys.credentials_file())
    if code != 0:
        raise StagingError(
            f"site {dirs.label}: cannot write the object store's keys to {dirs.where(path)}: "
            f"{' '.join(err.split()) or f'exit {code}'}"
        )
    return path


def _local_keys(keys: AccessKeys) -> str:
    directory = tempfile.mkdtemp(prefix="pwgen-objectstore-")  # 0700
    atexit.register(shutil.rmtree, directory, True)
    path = os.path.join(directory, KEYS_FILE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(keys.credentials_file())
    return path

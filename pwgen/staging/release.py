"""The end of a run's staging on a site: at executor shutdown, transfers stopped, the
run's work dir for data removed.

Called by the site executor's shutdown (`storage_access` providers with a
`release_site` method) while its tunnel (and ssh master) is still up; the directory is
removed through it. The directory lies inside
the executor's own per-run directory, which pwgen made for this run, so pwgen made it
too: nothing else on the site is removed.
"""

import logging
import shlex
import threading
from typing import Any

from pwgen.staging.errors import StagingError
from pwgen.staging.rsync import stop_transfers
from pwgen.staging.site import SiteDirs
from pwgen.staging.streams import stop_stream_return

logger = logging.getLogger(__name__)

# Staging dirs already released (two providers of one executor both call it).
_RELEASED: set[str] = set()
_RELEASED_LOCK = threading.Lock()


def release_site(executor: Any) -> None:
    """Stop the site's transfers and remove its staging dir; never raises."""
    try:
        dirs = SiteDirs.of(executor)
    except StagingError:
        return  # never started: nothing was staged
    if dirs is None or not dirs.used:
        return
    with _RELEASED_LOCK:
        if dirs.root in _RELEASED:
            return
        _RELEASED.add(dirs.root)
    stop_stream_return(dirs)  # tries whose streams are still here fail now
    stopped = stop_transfers(dirs.root)  # the run ends (Ctrl-C) while data moves
    if stopped:
        logger.warning("%s: stopped %d transfer(s) still running", dirs.label, stopped)
    tunnel = getattr(executor, "tunnel", None)
    if tunnel is None:
        return
    root = shlex.quote(dirs.root)
    # A task may have left a directory without write permission: rm would fail in it.
    code, _, err = tunnel.run(f"chmod -R u+rwx -- {root} 2>/dev/null; rm -rf -- {root}")
    if code != 0:
        logger.warning("%s: removing %s failed: %s", dirs.label, dirs.root, err)

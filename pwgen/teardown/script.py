"""The remote action: site_cleanup.sh (beside this module) with a crashed run's values.

The bash program is a file of its own; only its arguments are built here, each word
quoted with shlex, so no value is ever pasted into the program's text.
"""

import shlex
from collections.abc import Sequence
from importlib.resources import files

from pwgen.teardown.local import KILL_AFTER

#: Seconds to wait for cancelled blocks to leave the queue.
QUEUE_WAIT = 20
#: The bash program, run with `bash -c` on the login node.
CLEANUP_SCRIPT = "site_cleanup.sh"


def action_script(
    scheduler: str,
    job_ids: Sequence[str],
    relays: Sequence[tuple[int, str]],
    cert_dirs: Sequence[str],
    pools: Sequence[tuple[int, str]],
) -> str:
    """Bash for the login node: cancel, wait for the queue, stop relays and pools, rm certs.

    relays: (pid, pid file); pools: (pid, `--logdir=...` word). A pid is only signalled
    while its command line still holds that word (no reused pid is killed).
    """
    program = files("pwgen.teardown").joinpath(CLEANUP_SCRIPT).read_text(encoding="utf-8")
    # Ticks of 0.05 s before KILL, of 0.2 s for the queue (bash counts in integers).
    args = [scheduler, str(int(KILL_AFTER * 20)), str(QUEUE_WAIT * 5)]
    args += [word for job in job_ids for word in ("--job", job)]
    args += [word for pid, pidfile in relays for word in ("--relay", str(pid), pidfile)]
    args += [word for pid, marker in pools for word in ("--pool", str(pid), marker)]
    args += [word for path in cert_dirs for word in ("--cert", path)]
    return shlex.join(["bash", "-c", program, CLEANUP_SCRIPT, *args])

"""`pwgen teardown`: clean up after runs whose controller died (killed -9, machine lost).

A run tears itself down when it ends, even on Ctrl-C or SIGTERM; a `pwgen run`
killed with -9 cannot. It leaves, in its own sessions, the interchange here (its
`parsl: HTEX interchange` process keeps `<run>/runinfo/NNN/<label>/interchange.log`
open), the ssh master with its `-R` forward, and on each site the relay, the
running blocks (and their worker pools) and the copy of the worker certificates.

For every *crashed* run (no `finished` in its manifest, controller gone, not yet
torn down; or only the run given with `--run`):

1. here: TERM (then KILL after a few seconds) this user's interchange and Parsl
   processes that belong to the run (see `pwgen.status`: an open file, argument or
   cwd under the run's dir, or a descendant of such a helper) — and those of any
   other run whose controller is gone. Nothing else is touched: no other project's
   or user's process, no live run's.
2. on each site of the run, in parallel, in one ssh call (plus a check) that runs
   `site_cleanup.sh` (beside this module, its values as quoted arguments): cancel the
   run's blocks (`scancel`/`qdel` of the jobs whose names are the run's submit
   scripts' names: `parsl.<label>.block-<n>.<submit time>`), wait until they have
   left the queue, kill worker pools still running with the run's `--logdir`;
   stop the run's relay (the pid in `<workdir>/<uuid>/<label>/relay.pid`, checked
   to be a relay with that pid file); remove the certificate copy
   (`<workdir>/<uuid>/<label>/certificates`).
3. the site's ssh master (`ssh -O exit`), unless a live run of this project uses the
   site, or another pwgen relay still runs there (another project's live run shares
   the master, which is one per site and user, and carries its forward): then only
   the crashed run's forward is cancelled (`ssh -O cancel -R`).
4. the run's manifest gets `"torn_down": <time>` and `"crashed": true` (written
   atomically; a run killed before writing one gets a minimal manifest), once every
   step above succeeded. A torn-down run is not looked at again (unless `--run`).

Idempotent: a second teardown finds nothing to do. Nothing is ever started: remote
calls use `ControlMaster=no` (through the master while it lives).
"""

from pwgen.teardown.crashed import teardown
from pwgen.teardown.local import KILL_AFTER, stop_local
from pwgen.teardown.manifest import mark_torn_down
from pwgen.teardown.model import Action, TeardownError, TeardownReport
from pwgen.teardown.render import print_teardown, teardown_json, teardown_table
from pwgen.teardown.script import QUEUE_WAIT, action_script
from pwgen.teardown.site import SITE_TIMEOUT

__all__ = [
    "KILL_AFTER",
    "QUEUE_WAIT",
    "SITE_TIMEOUT",
    "Action",
    "TeardownError",
    "TeardownReport",
    "action_script",
    "mark_torn_down",
    "print_teardown",
    "stop_local",
    "teardown",
    "teardown_json",
    "teardown_table",
]

"""Parsl executors whose workers run on a remote site, reached through pwgen's tunnel.

`SiteHighThroughputExecutor` is Parsl's `HighThroughputExecutor` (and `SiteMPIExecutor`
Parsl's `MPIExecutor`) plus what a site that shares no network and no filesystem with
the controller needs, owned by the executor so that plain Parsl brings it up and down:

    parsl.load(config)   start():    tunnel up (ControlMaster, -R forward, relay on the
                                     login node; pwgen.tunnels) -> worker_port;
                                     fresh CurveZMQ certs, copied to the site (0700,
                                     no real server secret; pwgen.certificates);
                                     the launch command gets -a <login internal
                                     IP>, the port, --cert_dir and --logdir on the
                                     site; then Parsl's start();
                                     the tunnel supervisor starts.
    dfk.cleanup()        shutdown(): Parsl's shutdown (the DFK has already scaled in,
                                     i.e. cancelled, the blocks), then any block still
                                     not terminal is cancelled here, the remote cert
                                     copy removed, the relay, forward and master stopped.

A process that exits without `dfk.cleanup()` still gets the site torn down (an `atexit`
hook: blocks cancelled, tunnel closed); Parsl itself only warns then.

Ctrl-C: the terminal sends SIGINT to the whole foreground process group, which would
include Parsl's interchange, and `dfk.cleanup()` then hangs for ever (HTEX asks the dead
interchange which managers are connected, with no timeout, before cancelling blocks).
So the interchange runs in its own session (as the ssh master and the provider's ssh
calls do; launched by pwgen.interchange_guard, which also stops it and tears the run
down when the controller's process dies), and the commands cleanup needs answer
"no managers" once the interchange process has exited, so the blocks are still
cancelled.

The interchange always listens on loopback (`address` must be a loopback IP literal):
the site reaches it only through the tunnel. Encryption stays on by default.

    site.py   SiteExecutor: the site lifecycle above (tunnel, certs, launch command,
              shutdown, the interchange commands that must not hang)
    htex.py   SiteHighThroughputExecutor: Parsl's HTEX arguments + the site's
    mpi.py    SiteMPIExecutor: Parsl's MPIExecutor arguments + the site's
    flux.py   SiteFluxExecutor: HTEX whose blocks are Flux instances; apps asking for
              ranks run as Flux jobs there
    blocks.py cancel_active_blocks: blocks Parsl's cleanup left (also the site watch's)
"""

from pwgen.certificates import certificate_bundle
from pwgen.executors.flux import SiteFluxExecutor
from pwgen.executors.htex import SiteHighThroughputExecutor
from pwgen.executors.mpi import SiteMPIExecutor
from pwgen.executors.pool_launch import lean_worker_pool
from pwgen.executors.site import SiteExecutor

__all__ = [
    "SiteExecutor",
    "SiteFluxExecutor",
    "SiteHighThroughputExecutor",
    "SiteMPIExecutor",
    "certificate_bundle",
    "lean_worker_pool",
]

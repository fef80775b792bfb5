"""Per-site tunnels: how compute nodes reach an interchange that listens on loopback here.

Workers connect out to the interchange's one worker port P; nothing connects in to a
compute node. The interchange listens on 127.0.0.1:P on the controller, and:

    compute node ──► <login internal IP>:P      pwgen-relay on the login node
                 ──► login 127.0.0.1:P          sshd's end of `ssh -R 127.0.0.1:P:127.0.0.1:P`
                 ──► ssh ControlMaster          the site's one connection (pwgen's ssh config)
                 ──► controller 127.0.0.1:P     the interchange

Why a relay: with sshd's default `GatewayPorts no`, `-R <internal IP>:P` reports
success but binds loopback only (measured), so compute nodes could not reach it.
Nothing listens on a wildcard address on either side.

`SiteTunnel` owns that path for one site: `open()` makes sure the ControlMaster is up,
picks a port free on both ends, adds the forward, starts the relay and proves the
path end to end (a token sent by a listener here is read on the login node through
the relay); `start_supervisor()` checks master, forward and relay every few seconds
and re-creates whatever died (master → forward → relay), logging each repair;
`close()` stops the relay, cancels the forward and stops the master.

Facts this is built on (measured on the lab, see docs/remote-sites.md): a master
killed with -9 leaves its socket behind, and `ControlMaster yes` next to a stale socket silently
runs *without* multiplexing, so the stale socket is removed first; a master started
by this package runs in the foreground of its own session (`-N`, no `-f`), its output
to a log file, so no pipe of ours is held open and Ctrl-C on the terminal does not
kill it before the run's teardown has used it; the relay is started with `setsid`
and all of its streams redirected, or the ssh session never ends.

The package, one concept a module:

    errors.py     TunnelError
    master.py     ControlMaster: the site's ssh master (start, check, stop, shared use);
                  its ssh argvs come from pwgen.ssh.SshCommand
    relay.py      LoginRelay: port P, the -R forward, pwgen-relay, the path check
    site.py       SiteTunnel: open, health, check_and_repair, supervisor, close
"""

from pwgen.tunnels.errors import TunnelError
from pwgen.tunnels.master import COMMAND_TIMEOUT
from pwgen.tunnels.relay import PORT_ATTEMPTS, RELAY_START_SECONDS, proc_net_tcp
from pwgen.tunnels.site import (
    DEFAULT_CHECK_INTERVAL,
    FORWARD_RETRY_SECONDS,
    Health,
    Repair,
    SiteTunnel,
)

__all__ = [
    "COMMAND_TIMEOUT",
    "DEFAULT_CHECK_INTERVAL",
    "FORWARD_RETRY_SECONDS",
    "PORT_ATTEMPTS",
    "RELAY_START_SECONDS",
    "Health",
    "Repair",
    "SiteTunnel",
    "TunnelError",
    "proc_net_tcp",
]

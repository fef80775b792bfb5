"""`SiteTunnel`: one site's worker-port path, opened, supervised, repaired and closed.

It orchestrates the site's `ControlMaster` (pwgen.tunnels.master) and the login node's
forward and relay (pwgen.tunnels.relay); a daemon thread checks them every few seconds
and re-creates whatever died, in order master -> forward -> relay.
"""

import ipaddress
import logging
import os
import posixpath
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pwgen.tunnels.errors import TunnelError
from pwgen.tunnels.master import COMMAND_TIMEOUT, ControlMaster
from pwgen.tunnels.relay import LoginRelay

logger = logging.getLogger(__name__)

#: Seconds between two supervisor checks.
DEFAULT_CHECK_INTERVAL = 2.0
#: After a master restart, the site's sshd may still hold the old forward for a moment.
FORWARD_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class Health:
    """One supervisor look at a tunnel."""

    master: bool
    forward: bool
    relay: bool

    @property
    def ok(self) -> bool:
        return self.master and self.forward and self.relay


@dataclass(frozen=True)
class Repair:
    """Something the supervisor found dead and re-created."""

    at: float
    part: str  # "master" | "forward" | "relay"
    detail: str


class SiteTunnel:
    """The worker-port path of one site: ControlMaster, reverse forward, relay, supervisor.

    ssh_config, host
        pwgen's ssh config (`.pwgen/ssh/config`) and the site's `Host` alias in it.
    internal_address
        The login node's address as compute nodes see it (facts: `internal_address`).
    relay
        Path of `pwgen-relay` on the login node (facts: `relay`).
    remote_dir
        Absolute directory on the login node for the relay's pid file and log.
    port
        Use exactly this worker port (an error if it is taken); None: pick one at random
        in `port_range` that is free here and on the login node.
    check_interval
        Seconds between supervisor checks.
    log_file
        Local file for the output of a master started here (None: a temporary file).
    """

    def __init__(
        self,
        *,
        ssh_config: str,
        host: str,
        internal_address: str,
        relay: str,
        remote_dir: str,
        port: int | None = None,
        port_range: tuple[int, int] = (54000, 55000),
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        connect_timeout: int = 10,
        log_file: str | None = None,
        relay_allow: Sequence[str] = (),
    ) -> None:
        address = ipaddress.ip_address(internal_address)  # ValueError names the bad value
        if address.is_unspecified:
            raise TunnelError(f"site {host!r}: refusing the wildcard address {internal_address}")
        if not posixpath.isabs(remote_dir):
            raise TunnelError(f"site {host!r}: remote_dir {remote_dir!r} must be absolute")
        self.ssh_config = os.path.abspath(os.path.expanduser(ssh_config))
        self.host = host
        self.internal_address = str(address)
        self.relay = relay
        self.remote_dir = posixpath.normpath(remote_dir)
        self.requested_port = port
        self.port_range = port_range
        self.check_interval = check_interval
        self.connect_timeout = connect_timeout
        self.log_file = log_file
        self.repairs: list[Repair] = []
        #: time.monotonic() when the last supervisor check that found the whole path
        #: healthy began (None before one): the site watch's proof the tunnel is fine.
        self.healthy_checked_at: float | None = None
        self._master = ControlMaster(
            ssh_config=self.ssh_config,
            host=host,
            connect_timeout=connect_timeout,
            log_file=log_file,
        )
        self._login = LoginRelay(
            self._master,
            internal_address=self.internal_address,
            program=relay,
            remote_dir=self.remote_dir,
            requested_port=port,
            port_range=port_range,
            allow=relay_allow,
        )
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._opened = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SiteTunnel(host={self.host!r}, port={self.port}, relay_on={self.relay_address})"

    # --- public API -------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The worker port P once `open()` chose it, else None."""
        return self._login.port

    @property
    def relay_address(self) -> str:
        return self._login.address

    @property
    def pidfile(self) -> str:
        return self._login.pidfile

    @property
    def relay_log(self) -> str:
        return self._login.log

    def open(self, verify: bool = True) -> int:
        """Master up, port chosen, forward added, relay started, path verified: the port.

        `verify` sends a token from a listener on 127.0.0.1:P here to the login node
        through the relay and the forward; it needs P to be free here (call `open()`
        before the interchange binds it).
        """
        with self._lock:
            if self._closed:
                raise TunnelError(f"site {self.host!r}: tunnel already closed")
            if self._opened:
                assert self.port is not None
                return self.port
            self._master.register()
            try:
                self._master.ensure()
                port = self._login.choose_port_and_connect()
                if verify:
                    self.verify_path()
            except BaseException:
                self._teardown()
                raise
            self._opened = True
            logger.info(
                "site %s: tunnel up: %s -> 127.0.0.1:%d here",
                self.host,
                self.relay_address,
                port,
            )
            return port

    def verify_path(self, timeout: float = 5.0) -> None:
        """Prove the whole path: the login node reads, via internal:P, what a listener here sends.

        Only while nothing else listens on 127.0.0.1:P here (before the interchange).
        """
        port = self._login.require_port()
        probe = self._login.probe_path(timeout)
        if not probe.ok:
            health = self.health()
            raise TunnelError(
                f"site {self.host!r}: the worker-port path {self.relay_address} -> "
                f"127.0.0.1:{port} does not work (read {probe.out.strip()!r}, exit "
                f"{probe.code}: {probe.err.strip() or 'no error'}; master {_up(health.master)}, "
                f"forward {_up(health.forward)}, relay {_up(health.relay)}; listener "
                f"{'reached' if probe.reached else 'not reached'})"
            )

    def health(self) -> Health:
        """Master, forward (sshd listens on the login node's 127.0.0.1:P) and relay alive?"""
        if not self._master.alive():
            return Health(master=False, forward=False, relay=False)
        return self._login_health()

    def _login_health(self) -> Health:
        """Forward and relay, the master just found alive (one ssh round trip)."""
        state = self._login.state()
        if state is None:
            # ssh itself failed: the master is gone (or hung) after all.
            return Health(master=self._master.alive(), forward=False, relay=False)
        forward, relay = state
        return Health(master=True, forward=forward, relay=relay)

    def check_and_repair(self) -> list[Repair]:
        """One supervisor round: re-create what died, in order master → forward → relay."""
        with self._lock:
            if self._closed or not self._opened:
                return []
            repairs: list[Repair] = []
            began = time.monotonic()
            self._master.reap()
            if not self._master.alive():
                detail = self._master.ensure()
                repairs.append(self._note("master", f"ssh master was gone; {detail}"))
                self._login.add_forward(retry_for=FORWARD_RETRY_SECONDS)
                repairs.append(self._note("forward", f"re-added -R 127.0.0.1:{self.port}"))
            health = self._login_health()  # the master was checked just above
            if health.master and not health.forward:
                self._login.add_forward(retry_for=FORWARD_RETRY_SECONDS)
                repairs.append(self._note("forward", f"re-added -R 127.0.0.1:{self.port}"))
            if health.master and not health.relay:
                self._login.start_relay()
                repairs.append(self._note("relay", f"restarted on {self.relay_address}"))
            if health.ok and not repairs:
                self.healthy_checked_at = began
            return repairs

    def start_supervisor(self) -> None:
        """Check every `check_interval` s in a daemon thread until `close()`."""
        if self._supervisor is not None:
            return
        self._stop.clear()
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"pwgen-tunnel-{self.host}", daemon=True
        )
        self._supervisor.start()

    def stop_supervisor(self) -> None:
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=COMMAND_TIMEOUT + 10)
        self._supervisor = None

    def close(self) -> None:
        """Stop the relay, cancel the forward, stop the master. Safe to call twice."""
        self.stop_supervisor()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._teardown()
            logger.info("site %s: tunnel closed", self.host)

    def run(
        self, command: str, timeout: float = COMMAND_TIMEOUT, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run a bash snippet on the login node through the master: (exit, stdout, stderr).

        Exit 124: the snippet hit `timeout`; 255: ssh failed or did not answer
        (see `ControlMaster.run`).
        """
        return self._master.run(command, timeout, stdin)

    def master_pid(self) -> int | None:
        """The pid of the running master (`ssh -O check`), None if there is none."""
        return self._master.pid()

    def control_path(self) -> str:
        """The master's socket path, as ssh computes it from the config (`ssh -G`)."""
        return self._master.control_path()

    # --- internals --------------------------------------------------------------------

    def _note(self, part: str, detail: str) -> Repair:
        repair = Repair(time.time(), part, detail)
        self.repairs.append(repair)
        logger.warning("site %s: tunnel repaired: %s: %s", self.host, part, detail)
        return repair

    def _supervise(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                self.check_and_repair()
            except Exception as err:  # keep supervising: the next round may succeed
                logger.warning("site %s: tunnel check failed: %s", self.host, err)

    def _teardown(self) -> None:
        """Relay, forward, master: whatever exists. Never raises for a part already gone."""
        if self.port is not None:
            # Through the master, or over a direct connection if the master is gone.
            self._login.stop_relay()
            if self._master.alive():
                self._login.forward("cancel")
        if self._master.release():
            self._master.stop()


def _up(flag: bool) -> str:
    return "up" if flag else "down"

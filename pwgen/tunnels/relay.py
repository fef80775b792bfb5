"""The login node's end of the worker-port path: port P, the reverse forward, the relay.

A port P free here and on the login node is chosen, `ssh -R 127.0.0.1:P:127.0.0.1:P`
is added to the site's master, and `pwgen-relay` listens on <login internal IP>:P,
passing connections to the forward. The path is proven by a token a listener here
sends, read on the login node through the relay.
"""

import contextlib
import ipaddress
import logging
import posixpath
import random
import re
import secrets
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pwgen.poll import poll
from pwgen.tunnels.errors import TunnelError
from pwgen.tunnels.master import COMMAND_TIMEOUT, ControlMaster

logger = logging.getLogger(__name__)

#: Ports tried (at random in the range) before giving up.
PORT_ATTEMPTS = 20
#: Seconds a starting relay has to write its pid file (it does so once it listens).
RELAY_START_SECONDS = 5
#: Exit status of the relay start script when the port is taken on the login node.
_PORT_TAKEN = 3


@dataclass(frozen=True)
class PathProbe:
    """What a token sent through the worker-port path showed on the login node."""

    token: str
    code: int
    out: str
    err: str
    reached: bool  # the listener here accepted a connection

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.out.strip() == self.token


class LoginRelay:
    """Port P, the `-R` forward on `master` and `pwgen-relay` on the login node.

    internal_address
        The login node's address as compute nodes see it; the relay listens there.
    program
        Path of `pwgen-relay` on the login node.
    remote_dir
        Absolute directory on the login node for the relay's pid file and log.
    requested_port, port_range
        Use exactly this port (an error if it is taken); None: pick one at random in
        `port_range` that is free here and on the login node.
    """

    def __init__(
        self,
        master: ControlMaster,
        *,
        internal_address: str,
        program: str,
        remote_dir: str,
        requested_port: int | None,
        port_range: tuple[int, int],
        allow: Sequence[str] = (),
    ) -> None:
        self.master = master
        self.host = master.host
        self.internal_address = internal_address
        self.program = program
        self.remote_dir = remote_dir
        self.requested_port = requested_port
        self.port_range = port_range
        # Only these networks may use the relay (pwgen-relay --allow); () lets any host in.
        # The login node itself always may: the tunnel checks the path from there.
        networks = [str(ipaddress.ip_network(net, strict=False)) for net in allow]
        self.allow = (*networks, f"{internal_address}/32") if networks else ()
        self.port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.internal_address}:{self.port}" if self.port else self.internal_address

    @property
    def pidfile(self) -> str:
        return posixpath.join(self.remote_dir, "relay.pid")

    @property
    def log(self) -> str:
        return posixpath.join(self.remote_dir, "relay.log")

    def require_port(self) -> int:
        if self.port is None:
            raise TunnelError(f"site {self.host!r}: the tunnel has no port yet (open() it)")
        return self.port

    # --- port and forward -------------------------------------------------------------

    def _candidates(self) -> list[int]:
        if self.requested_port is not None:
            return [self.requested_port]
        low, high = self.port_range
        pool = range(low, high)
        return random.sample(pool, min(PORT_ATTEMPTS, len(pool)))

    def choose_port_and_connect(self) -> int:
        """A port free on both ends, with the forward added and the relay listening."""
        tried: list[str] = []
        for port in self._candidates():
            if not _free_here(port):
                tried.append(f"{port}: in use here")
                continue
            self.port = port
            ok, why = self.forward("forward")
            if not ok:
                tried.append(f"{port}: forward refused on the login node ({why})")
                continue
            try:
                self.start_relay()
            except _PortTakenError as err:
                self.forward("cancel")
                tried.append(f"{port}: relay cannot listen ({err})")
                continue
            except BaseException:
                self.forward("cancel")
                raise
            return port
        self.port = None
        raise TunnelError(
            f"site {self.host!r}: no usable worker port ({'; '.join(tried[-3:]) or 'none tried'})"
        )

    def _forward_spec(self) -> str:
        port = self.require_port()
        return f"127.0.0.1:{port}:127.0.0.1:{port}"

    def forward(self, operation: str) -> tuple[bool, str]:
        """`ssh -O forward` or `-O cancel` of the `-R` forward: (ok, ssh's message)."""
        try:
            done = self.master.control(operation, "-R", self._forward_spec())
        except subprocess.TimeoutExpired:
            return False, "ssh -O did not answer"
        return done.returncode == 0, " ".join(done.stderr.split())

    def add_forward(self, retry_for: float) -> None:
        """Add the forward, retrying for `retry_for` s (sshd may still hold the old one)."""
        why = ""

        def added() -> bool:
            nonlocal why
            ok, why = self.forward("forward")
            return ok

        if not poll(added, retry_for, interval=0.2):
            raise TunnelError(f"site {self.host!r}: cannot re-add the forward: {why}")

    # --- the relay --------------------------------------------------------------------

    def _alive_function(self) -> str:
        """A shell function `alive PID`: PID is our relay (not a reused pid)."""
        marker = shlex.quote(f"--listen {self.address} ")
        return (
            'alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
            f"tr '\\0' ' ' </proc/\"$1\"/cmdline 2>/dev/null | grep -qF -- {marker}; }}"
        )

    def _allow_words(self) -> str:
        """The relay's `--allow` options (each a validated network, quoted anyway)."""
        return "".join(f" --allow {shlex.quote(network)}" for network in self.allow)

    def start_relay(self) -> None:
        """(Re)start the relay on the login node; wait until it listens."""
        port = self.require_port()
        pidfile, log = shlex.quote(self.pidfile), shlex.quote(self.log)
        steps = int(RELAY_START_SECONDS / 0.05)
        script = f"""{self._alive_function()}
umask 077
mkdir -p -- {shlex.quote(self.remote_dir)} || exit 1
old=$(cat {pidfile} 2>/dev/null)
if alive "$old"; then kill "$old"; sleep 0.1; fi
rm -f -- {pidfile}
setsid {shlex.quote(self.program)} --listen {self.address} --target 127.0.0.1:{port} \\
    --pidfile {pidfile}{self._allow_words()} </dev/null >>{log} 2>&1 &
pid=$!
i=0
while [ ! -s {pidfile} ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$i" -ge {steps} ]; then
        tail -n 3 {log} >&2
        if tail -n 1 {log} | grep -q 'already in use'; then exit {_PORT_TAKEN}; fi
        exit 1
    fi
    i=$((i + 1)); sleep 0.05
done
"""
        code, _, err = self.master.run(script, timeout=RELAY_START_SECONDS + 10)
        if code == _PORT_TAKEN:
            raise _PortTakenError(" ".join(err.split()))
        if code != 0:
            raise TunnelError(
                f"site {self.host!r}: cannot start the relay {self.program} on "
                f"{self.address}: {' '.join(err.split()) or f'exit {code}'}"
            )

    def stop_relay(self) -> None:
        pidfile = shlex.quote(self.pidfile)
        script = f"""{self._alive_function()}
pid=$(cat {pidfile} 2>/dev/null)
if alive "$pid"; then
    kill "$pid"
    i=0; while alive "$pid" && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid"; fi
fi
rm -f -- {pidfile}
"""
        code, _, err = self.master.run(script)
        if code != 0:
            logger.warning("site %s: stopping the relay failed: %s", self.host, err.strip())

    # --- checks -----------------------------------------------------------------------

    def state(self) -> tuple[bool, bool] | None:
        """(forward, relay) alive on the login node; None if ssh itself failed.

        Forward: sshd listens on the login node's 127.0.0.1:P; relay: our relay's pid
        runs and something listens on <internal address>:P.
        """
        port = self.require_port()
        check = (
            f"{self._alive_function()}; "
            f'r=0; pid=$(cat {shlex.quote(self.pidfile)} 2>/dev/null) && alive "$pid" && r=1; '
            f"f=$(grep -c ' {proc_net_tcp('127.0.0.1', port)} 00000000:0000 0A ' /proc/net/tcp); "
            f"l=$(grep -c ' {proc_net_tcp(self.internal_address, port)} 00000000:0000 0A ' "
            "/proc/net/tcp); "
            'echo "health $r $f $l"'
        )
        code, out, _ = self.master.run(check, timeout=COMMAND_TIMEOUT)
        match = re.search(r"health (\d) (\d+) (\d+)", out)
        if code != 0 or match is None:
            return None
        relay_pid, forward, listening = (int(group) for group in match.groups())
        return forward > 0, relay_pid > 0 and listening > 0

    def probe_path(self, timeout: float) -> PathProbe:
        """Send a token from a listener on 127.0.0.1:P here; read it on the login node.

        Only while nothing else listens on 127.0.0.1:P here (before the interchange).
        """
        port = self.require_port()
        token = secrets.token_hex(8)
        with _token_listener(port, token, timeout) as served:
            read = (
                f"exec 3<>/dev/tcp/{self.internal_address}/{port} || exit 2; "
                f'read -r -t {int(timeout)} line <&3; exec 3>&-; echo "$line"'
            )
            code, out, err = self.master.run(read, timeout=timeout + 5)
        return PathProbe(token, code, out, err, served.is_set())


class _PortTakenError(Exception):
    """The relay's port is taken on the login node's internal address."""


def proc_net_tcp(address: str, port: int) -> str:
    """`address:port` as /proc/net/tcp prints it (IPv4, little-endian hex)."""
    packed = ipaddress.IPv4Address(address).packed
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def _free_here(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _token_listener(port: int, token: str, timeout: float) -> Iterator[threading.Event]:
    """Listen on 127.0.0.1:port; send `token` to the first client, wait for its EOF."""
    served = threading.Event()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4)
    listener.settimeout(timeout)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            served.set()
            conn.settimeout(timeout)
            with contextlib.suppress(OSError):
                conn.sendall(f"{token}\n".encode())
                # The client closes first, so the TIME_WAIT is not on port P here.
                while conn.recv(1024):
                    pass

    thread = threading.Thread(target=serve, name="pwgen-tunnel-verify", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        thread.join(timeout + 1)
        listener.close()

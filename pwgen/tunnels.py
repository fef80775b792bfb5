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

Facts this is built on (measured on the lab, see DESIGN.md): a master killed with -9
leaves its socket behind, and `ControlMaster yes` next to a stale socket silently
runs *without* multiplexing, so the stale socket is removed first; a master started
by this module runs in the foreground of its own session (`-N`, no `-f`), its output
to a log file, so no pipe of ours is held open and Ctrl-C on the terminal does not
kill it before the run's teardown has used it; the relay is started with `setsid`
and all of its streams redirected, or the ssh session never ends.
"""

import contextlib
import ipaddress
import logging
import os
import posixpath
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from pwgen.errors import PwgenError

logger = logging.getLogger(__name__)

#: Seconds between two supervisor checks.
DEFAULT_CHECK_INTERVAL = 2.0
#: Ports tried (at random in the range) before giving up.
PORT_ATTEMPTS = 20
#: After a master restart, the site's sshd may still hold the old forward for a moment.
FORWARD_RETRY_SECONDS = 10.0
#: Seconds a starting relay has to write its pid file (it does so once it listens).
RELAY_START_SECONDS = 5
#: Remote commands of the tunnel itself (short shell snippets).
COMMAND_TIMEOUT = 30
#: Exit status of the relay start script when the port is taken on the login node.
_PORT_TAKEN = 3
_MASTER_PID = re.compile(r"Master running \(pid=(\d+)\)")


class TunnelError(PwgenError):
    """A site's tunnel could not be set up (ssh master, forward, relay or the path)."""


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


# One ControlMaster per ControlPath, shared by every tunnel of this process that uses
# it (two sites on the same login node and user): the last close() stops it.
_MASTER_USERS: dict[str, int] = {}
_MASTER_USERS_LOCK = threading.Lock()


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
        self.port: int | None = None
        self.repairs: list[Repair] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._master_proc: subprocess.Popen[bytes] | None = None
        self._control_path: str | None = None
        self._registered = False
        self._opened = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SiteTunnel(host={self.host!r}, port={self.port}, relay_on={self.relay_address})"

    # --- public API -------------------------------------------------------------------

    @property
    def relay_address(self) -> str:
        return f"{self.internal_address}:{self.port}" if self.port else self.internal_address

    @property
    def pidfile(self) -> str:
        return posixpath.join(self.remote_dir, "relay.pid")

    @property
    def relay_log(self) -> str:
        return posixpath.join(self.remote_dir, "relay.log")

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
            self._register_master()
            try:
                self._ensure_master()
                self.port = self._choose_port_and_connect()
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
                self.port,
            )
            return self.port

    def verify_path(self, timeout: float = 5.0) -> None:
        """Prove the whole path: the login node reads, via internal:P, what a listener here sends.

        Only while nothing else listens on 127.0.0.1:P here (before the interchange).
        """
        port = self._require_port()
        token = secrets.token_hex(8)
        with _token_listener(port, token, timeout) as served:
            read = (
                f"exec 3<>/dev/tcp/{self.internal_address}/{port} || exit 2; "
                f'read -r -t {int(timeout)} line <&3; exec 3>&-; echo "$line"'
            )
            code, out, err = self.run(read, timeout=timeout + 5)
        if code != 0 or out.strip() != token:
            health = self.health()
            raise TunnelError(
                f"site {self.host!r}: the worker-port path {self.relay_address} -> "
                f"127.0.0.1:{port} does not work (read {out.strip()!r}, exit {code}: "
                f"{err.strip() or 'no error'}; master {_up(health.master)}, forward "
                f"{_up(health.forward)}, relay {_up(health.relay)}; listener "
                f"{'reached' if served.is_set() else 'not reached'})"
            )

    def health(self) -> Health:
        """Master, forward (sshd listens on the login node's 127.0.0.1:P) and relay alive?"""
        if not self._master_alive():
            return Health(master=False, forward=False, relay=False)
        port = self._require_port()
        check = (
            f"{self._relay_alive_function()}; "
            f'r=0; pid=$(cat {shlex.quote(self.pidfile)} 2>/dev/null) && alive "$pid" && r=1; '
            f"f=$(grep -c ' {_proc_net_tcp('127.0.0.1', port)} 00000000:0000 0A ' /proc/net/tcp); "
            f"l=$(grep -c ' {_proc_net_tcp(self.internal_address, port)} 00000000:0000 0A ' "
            "/proc/net/tcp); "
            'echo "health $r $f $l"'
        )
        code, out, _ = self.run(check, timeout=COMMAND_TIMEOUT)
        match = re.search(r"health (\d) (\d+) (\d+)", out)
        if code != 0 or match is None:
            # ssh itself failed: the master is gone (or hung) after all.
            return Health(master=self._master_alive(), forward=False, relay=False)
        relay_pid, forward, listening = (int(group) for group in match.groups())
        return Health(master=True, forward=forward > 0, relay=relay_pid > 0 and listening > 0)

    def check_and_repair(self) -> list[Repair]:
        """One supervisor round: re-create what died, in order master → forward → relay."""
        with self._lock:
            if self._closed or not self._opened:
                return []
            repairs: list[Repair] = []
            self._reap_master()
            if not self._master_alive():
                detail = self._ensure_master()
                repairs.append(self._note("master", f"ssh master was gone; {detail}"))
                self._add_forward(retry_for=FORWARD_RETRY_SECONDS)
                repairs.append(self._note("forward", f"re-added -R 127.0.0.1:{self.port}"))
            health = self.health()
            if health.master and not health.forward:
                self._add_forward(retry_for=FORWARD_RETRY_SECONDS)
                repairs.append(self._note("forward", f"re-added -R 127.0.0.1:{self.port}"))
            if health.master and not health.relay:
                self._start_relay()
                repairs.append(self._note("relay", f"restarted on {self.relay_address}"))
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

        Never becomes a master itself (`ControlMaster=no`): a dead master makes this a
        direct connection, not a new master holding our pipes. Exit 124: the snippet hit
        `timeout` (stopped on the site); 255: ssh failed or did not answer (killed here).
        """
        seconds = max(1, int(timeout))
        remote = f"timeout -k 2 {seconds} bash -c {shlex.quote(command)}"
        argv = [*self._ssh_base(), "-o", "ControlMaster=no", self.host, "--", remote]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=seconds + self.connect_timeout + 3)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            out, err = _kill_and_drain(proc)
            code = 255
            err += f"\npwgen: ssh to {self.host} did not answer within {seconds} s".encode()
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    # --- the master -------------------------------------------------------------------

    def _ssh_base(self) -> list[str]:
        return [
            "ssh",
            "-F",
            self.ssh_config,
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
        ]

    def _control(self, operation: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", self.ssh_config, "-O", operation, *extra, self.host]
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def master_pid(self) -> int | None:
        """The pid of the running master (`ssh -O check`), None if there is none."""
        try:
            done = self._control("check")
        except subprocess.TimeoutExpired:  # a hung master counts as dead
            return None
        match = _MASTER_PID.search(done.stderr)
        return int(match.group(1)) if done.returncode == 0 and match else None

    def _master_alive(self) -> bool:
        return self.master_pid() is not None

    def control_path(self) -> str:
        """The master's socket path, as ssh computes it from the config (`ssh -G`)."""
        if self._control_path is None:
            done = subprocess.run(
                ["ssh", "-F", self.ssh_config, "-G", self.host],
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            found = re.search(r"^controlpath (.+)$", done.stdout, re.MULTILINE)
            if done.returncode != 0 or found is None or found.group(1) == "none":
                raise TunnelError(
                    f"site {self.host!r}: {self.ssh_config} sets no ControlPath for it "
                    f"({done.stderr.strip() or 'ssh -G'}); the tunnel needs a shared master"
                )
            self._control_path = found.group(1)
        return self._control_path

    def _ensure_master(self) -> str:
        """Make sure a master runs; returns what was done (for the logs)."""
        pid = self.master_pid()
        if pid is not None:
            return f"master pid {pid} already running"
        path = self.control_path()
        if os.path.exists(path):
            # Left by a master killed with -9: `ControlMaster yes` would run unmultiplexed.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            logger.info("site %s: removed stale control socket %s", self.host, path)
        log, start = self._open_master_log()
        with log:
            proc = subprocess.Popen(
                [
                    *self._ssh_base(),
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=no",
                    "-N",
                    self.host,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C on the terminal must not kill it
            )
            deadline = time.monotonic() + self.connect_timeout + 5
            while (pid := self.master_pid()) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _stop_process(proc)
                    log.seek(start)
                    output = " ".join(log.read().decode(errors="replace").split()[-40:])
                    raise TunnelError(
                        f"site {self.host!r}: cannot start the ssh master "
                        f"(exit {proc.returncode}): {output or 'no output'}"
                    )
                time.sleep(0.05)
        if pid != proc.pid:
            # Another ssh (a provider's `ControlMaster auto`) became the master first.
            _stop_process(proc)
            return f"adopted master pid {pid}"
        self._master_proc = proc
        return f"started master pid {pid}"

    def _open_master_log(self) -> tuple[IO[bytes], int]:
        """The file a new master writes to, and where this start's output begins."""
        if self.log_file is None:
            return tempfile.TemporaryFile(), 0
        os.makedirs(os.path.dirname(os.path.abspath(self.log_file)), exist_ok=True)
        handle = open(self.log_file, "a+b")  # noqa: SIM115 - closed by the caller
        return handle, handle.tell()

    def _reap_master(self) -> None:
        if self._master_proc is not None and self._master_proc.poll() is not None:
            self._master_proc = None

    def _register_master(self) -> None:
        if not self._registered:
            with _MASTER_USERS_LOCK:
                path = self.control_path()
                _MASTER_USERS[path] = _MASTER_USERS.get(path, 0) + 1
            self._registered = True

    def _release_master(self) -> bool:
        """Unregister; True when this tunnel was the master's last user in this process.

        A tunnel that never registered (never opened) stops no master: it may be
        someone else's.
        """
        if not self._registered:
            return False
        self._registered = False
        with _MASTER_USERS_LOCK:
            path = self.control_path()
            _MASTER_USERS[path] -= 1
            if _MASTER_USERS[path] > 0:
                return False
            del _MASTER_USERS[path]
            return True

    def _stop_master(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._control("exit")
        if self._master_proc is not None:
            _stop_process(self._master_proc)
            self._master_proc = None

    # --- port, forward, relay ---------------------------------------------------------

    def _candidates(self) -> list[int]:
        if self.requested_port is not None:
            return [self.requested_port]
        low, high = self.port_range
        pool = range(low, high)
        return random.sample(pool, min(PORT_ATTEMPTS, len(pool)))

    def _choose_port_and_connect(self) -> int:
        tried: list[str] = []
        for port in self._candidates():
            if not _free_here(port):
                tried.append(f"{port}: in use here")
                continue
            self.port = port
            ok, why = self._forward("forward")
            if not ok:
                tried.append(f"{port}: forward refused on the login node ({why})")
                continue
            try:
                self._start_relay()
            except _PortTakenError as err:
                self._forward("cancel")
                tried.append(f"{port}: relay cannot listen ({err})")
                continue
            except BaseException:
                self._forward("cancel")
                raise
            return port
        self.port = None
        raise TunnelError(
            f"site {self.host!r}: no usable worker port ({'; '.join(tried[-3:]) or 'none tried'})"
        )

    def _forward_spec(self) -> str:
        port = self._require_port()
        return f"127.0.0.1:{port}:127.0.0.1:{port}"

    def _forward(self, operation: str) -> tuple[bool, str]:
        try:
            done = self._control(operation, "-R", self._forward_spec())
        except subprocess.TimeoutExpired:
            return False, "ssh -O did not answer"
        return done.returncode == 0, " ".join(done.stderr.split())

    def _add_forward(self, retry_for: float) -> None:
        deadline = time.monotonic() + retry_for
        while True:
            ok, why = self._forward("forward")
            if ok:
                return
            if time.monotonic() > deadline:
                raise TunnelError(f"site {self.host!r}: cannot re-add the forward: {why}")
            time.sleep(0.2)

    def _relay_alive_function(self) -> str:
        """A shell function `alive PID`: PID is our relay (not a reused pid)."""
        marker = shlex.quote(f"--listen {self.relay_address} ")
        return (
            'alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
            f"tr '\\0' ' ' </proc/\"$1\"/cmdline 2>/dev/null | grep -qF -- {marker}; }}"
        )

    def _start_relay(self) -> None:
        """(Re)start the relay on the login node; wait until it listens."""
        port = self._require_port()
        pidfile, log = shlex.quote(self.pidfile), shlex.quote(self.relay_log)
        steps = int(RELAY_START_SECONDS / 0.05)
        script = f"""{self._relay_alive_function()}
umask 077
mkdir -p -- {shlex.quote(self.remote_dir)} || exit 1
old=$(cat {pidfile} 2>/dev/null)
if alive "$old"; then kill "$old"; sleep 0.1; fi
rm -f -- {pidfile}
setsid {shlex.quote(self.relay)} --listen {self.relay_address} --target 127.0.0.1:{port} \\
    --pidfile {pidfile} </dev/null >>{log} 2>&1 &
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
        code, _, err = self.run(script, timeout=RELAY_START_SECONDS + 10)
        if code == _PORT_TAKEN:
            raise _PortTakenError(" ".join(err.split()))
        if code != 0:
            raise TunnelError(
                f"site {self.host!r}: cannot start the relay {self.relay} on "
                f"{self.relay_address}: {' '.join(err.split()) or f'exit {code}'}"
            )

    def _stop_relay(self) -> None:
        pidfile = shlex.quote(self.pidfile)
        script = f"""{self._relay_alive_function()}
pid=$(cat {pidfile} 2>/dev/null)
if alive "$pid"; then
    kill "$pid"
    i=0; while alive "$pid" && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid"; fi
fi
rm -f -- {pidfile}
"""
        code, _, err = self.run(script)
        if code != 0:
            logger.warning("site %s: stopping the relay failed: %s", self.host, err.strip())

    # --- internals --------------------------------------------------------------------

    def _require_port(self) -> int:
        if self.port is None:
            raise TunnelError(f"site {self.host!r}: the tunnel has no port yet (open() it)")
        return self.port

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
            self._stop_relay()
            if self._master_alive():
                self._forward("cancel")
        if self._release_master():
            self._stop_master()


class _PortTakenError(Exception):
    """The relay's port is taken on the login node's internal address."""


def _up(flag: bool) -> str:
    return "up" if flag else "down"


def _proc_net_tcp(address: str, port: int) -> str:
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


def _stop_process(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_and_drain(proc: "subprocess.Popen[bytes]") -> tuple[bytes, bytes]:
    """Kill ssh's process group; return what it wrote (a master may hold its pipes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        return proc.communicate(timeout=1)
    except subprocess.TimeoutExpired as partial:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        return partial.output or b"", partial.stderr or b""

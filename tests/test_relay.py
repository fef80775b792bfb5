"""pwgen-relay (pwgen.hpc's roles/relay/files/pwgen_relay.py) on loopback: a real subprocess
between test clients and a local echo server, both on 127.0.0.1.

PWGEN_RELAY_PYTHON=/path/to/python3.8 runs the relay with another interpreter (the
relay must work on Python >= 3.8).
"""

import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from pwgen.assets import collection_dir
from pwgen.poll import poll

RELAY = collection_dir() / "roles" / "relay" / "files" / "pwgen_relay.py"
PYTHON = os.environ.get("PWGEN_RELAY_PYTHON") or sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class Server:
    """A threaded TCP server on 127.0.0.1; `handler(conn)` serves one connection."""

    def __init__(self, handler: Callable[[socket.socket], None], port: int = 0) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            self.handler(conn)

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def echo(conn: socket.socket) -> None:
    """Echo until the client half-closes, then close: needs the relay to pass on EOF."""
    while data := conn.recv(1 << 20):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


@pytest.fixture
def echo_server() -> Iterator[Server]:
    server = Server(echo)
    yield server
    server.close()


class RelayProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, pidfile: Path, log: Path):
        self.proc, self.port, self.pidfile, self.log = proc, port, pidfile, log

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


@contextmanager
def relay(
    tmp_path: Path,
    target_port: int,
    *extra: str,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[RelayProcess]:
    port = free_port()
    pidfile, log = tmp_path / "relay.pid", tmp_path / "relay.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *(PYTHON, str(RELAY), "--listen", f"127.0.0.1:{port}"),
                *("--target", f"127.0.0.1:{target_port}", "--pidfile", str(pidfile)),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stderr=log_file,
            preexec_fn=preexec_fn,
        )
    try:
        # The pid file is written once the socket listens.
        started = poll(lambda: pidfile.exists() or proc.poll() is not None, 10, interval=0.01)
        assert started and proc.poll() is None, f"relay did not start: {log.read_text()}"
        yield RelayProcess(proc, port, pidfile, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


def round_trip(relay_proc: RelayProcess, payload: bytes) -> bytes:
    """Send `payload`, half-close, read the echo to EOF (sending in its own thread)."""
    with relay_proc.connect() as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = recv_all(sock)
        sender.join()
    return received


def test_echo_through_the_relay(tmp_path: Path, echo_server: Server) -> None:
    with relay(tmp_path, echo_server.port) as proc:
        assert round_trip(proc, b"hello") == b"hello"
    assert proc.proc.returncode == 0
    lines = proc.log.read_text().splitlines()
    assert any("listening on 127.0.0.1" in line for line in lines)
    # One line per connection, with what went each way.
    assert sum("5 B to target, 5 B back" in line for line in lines) == 1


def test_many_concurrent_clients(tmp_path: Path, echo_server: Server) -> None:
    clients = 200
    barrier = threading.Barrier(clients)
    failures: list[str] = []

    def client(index: int, proc: RelayProcess) -> None:
        payload = os.urandom(32 * 1024) + str(index).encode()
        try:
            with proc.connect() as sock:
                barrier.wait(30)  # every client connected at once before anyone sends
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                if recv_all(sock) != payload:
                    failures.append(f"client {index}: wrong echo")
        except (OSError, threading.BrokenBarrierError) as err:
            failures.append(f"client {index}: {err!r}")

    with relay(tmp_path, echo_server.port) as proc:
        threads = [threading.Thread(target=client, args=(i, proc)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert proc.proc.poll() is None
    assert not failures, failures[:5]


def test_large_payload_arrives_intact(tmp_path: Path, echo_server: Server) -> None:
    payload = os.urandom(20 * 1024 * 1024)
    with relay(tmp_path, echo_server.port) as proc:
        start = time.perf_counter()
        received = round_trip(proc, payload)
        elapsed = time.perf_counter() - start
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    direct_start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", echo_server.port)) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        recv_all(sock)
        sender.join()
    direct = time.perf_counter() - direct_start
    megabytes = len(payload) / 1e6
    print(
        f"\nrelay throughput: {megabytes / elapsed:.0f} MB/s each way "
        f"({megabytes:.0f} MB echoed in {elapsed:.2f} s; direct {megabytes / direct:.0f} MB/s)"
    )


def test_half_close_from_the_server_side(tmp_path: Path) -> None:
    """The target says everything and half-closes first; the client still gets to answer."""
    got: list[bytes] = []

    def greet_then_listen(conn: socket.socket) -> None:
        conn.sendall(b"greeting")
        conn.shutdown(socket.SHUT_WR)
        got.append(recv_all(conn))

    server = Server(greet_then_listen)
    try:
        with relay(tmp_path, server.port) as proc, proc.connect() as sock:
            assert recv_all(sock) == b"greeting"  # EOF passed on to the client
            sock.sendall(b"answer after EOF")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b""
            poll(lambda: bool(got), 5, interval=0.01)
    finally:
        server.close()
    assert got == [b"answer after EOF"]


def test_half_close_from_the_client_side(tmp_path: Path, echo_server: Server) -> None:
    """The client half-closes before reading: it still receives everything back."""
    with relay(tmp_path, echo_server.port) as proc, proc.connect() as sock:
        sock.sendall(b"x" * 100_000)
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"x" * 100_000


@pytest.mark.parametrize(
    ("listen", "message", "extra"),
    [
        ("0.0.0.0:5000", "wildcard", ()),
        ("[::]:5000", "wildcard", ()),
        ("localhost:5000", "not a name", ()),
        ("127.0.0.1:0", "1-65535", ()),
        ("127.0.0.1", "IP:PORT", ()),
        ("127.0.0.1:5000", "--allow 'compute'", ("--allow", "compute")),
        ("127.0.0.1:5000", "at least 1", ("--max-connections", "0")),
    ],
)
def test_refuses_wildcard_and_bad_addresses(
    listen: str, message: str, extra: tuple[str, ...]
) -> None:
    result = subprocess.run(
        [PYTHON, str(RELAY), "--listen", listen, "--target", "127.0.0.1:5001", *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwgen-relay: error: "), result.stderr
    assert message in lines[0]


def test_sigterm_exits_cleanly_and_removes_pidfile(tmp_path: Path, echo_server: Server) -> None:
    with relay(tmp_path, echo_server.port) as proc, proc.connect() as open_conn:
        open_conn.sendall(b"ping")
        assert open_conn.recv(10) == b"ping"
        assert proc.pidfile.read_text().strip() == str(proc.proc.pid)
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
        assert recv_all(open_conn) == b""  # open connections are closed, not left hanging
    assert not proc.pidfile.exists()
    assert "SIGTERM: exiting" in proc.log.read_text()


def test_target_down_closes_the_client_and_keeps_running(tmp_path: Path) -> None:
    target = free_port()  # nothing listens there yet
    with relay(tmp_path, target) as proc:
        # Closed at once: an EOF, or a reset if our connect raced the relay's close.
        with proc.connect() as sock, suppress(ConnectionResetError):
            assert recv_all(sock) == b""
        assert proc.proc.poll() is None
        server = Server(echo, port=target)  # the target comes up: the same relay works
        try:
            assert round_trip(proc, b"back") == b"back"
        finally:
            server.close()
    assert "Connection refused" in proc.log.read_text()


def test_out_of_file_descriptors_pauses_and_recovers(tmp_path: Path, echo_server: Server) -> None:
    """With a tiny descriptor limit, the relay stops accepting instead of spinning, and
    accepts again once connections close."""

    def tiny_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))

    with relay(tmp_path, echo_server.port, preexec_fn=tiny_fd_limit) as proc:
        held = []
        for _ in range(20):  # far more connections than 24 descriptors allow
            sock = proc.connect()
            sock.sendall(b"x")
            held.append(sock)
        time.sleep(0.3)
        assert proc.proc.poll() is None
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert round_trip(proc, b"after") == b"after"
    log = proc.log.read_text()
    assert "not accepting until a connection closes" in log
    assert log.count("out of file descriptors") < 10  # no busy loop filling the log


def test_idle_exit(tmp_path: Path, echo_server: Server) -> None:
    with relay(tmp_path, echo_server.port, "--idle-exit", "0.3") as proc:
        assert proc.proc.wait(10) == 0
    assert not proc.pidfile.exists()


def _closed_at_once(sock: socket.socket) -> bool:
    """The relay closed this client without relaying it (EOF or reset, nothing echoed)."""
    sock.settimeout(10)
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _echoed(proc: RelayProcess) -> bool:
    """One byte goes through the relay and comes back (False: refused or closed)."""
    try:
        with proc.connect() as sock:
            sock.sendall(b"e")
            return sock.recv(1) == b"e"
    except OSError:
        return False


def test_connections_over_the_cap_are_closed_and_the_held_ones_served(
    tmp_path: Path, echo_server: Server
) -> None:
    """Anyone on the site's network can connect: a flood cannot exhaust the login node."""
    with relay(tmp_path, echo_server.port, "--max-connections", "2") as proc:
        held = [proc.connect(), proc.connect()]
        for sock in held:  # both relayed (the echo proves it)
            sock.sendall(b"h")
            assert sock.recv(1) == b"h"
        with proc.connect() as third:
            assert _closed_at_once(third)
        held.pop().close()
        # Relayed again once the relay has seen that close (until then: closed at once).
        assert poll(lambda: _echoed(proc), 10, interval=0.1)
        held[0].close()
    assert "closed: over --max-connections 2" in proc.log.read_text()


def test_only_allowed_networks_are_relayed(tmp_path: Path, echo_server: Server) -> None:
    with relay(tmp_path, echo_server.port, "--allow", "10.0.0.0/8") as proc:
        outsider = proc.connect()  # 127.0.0.1 is not in 10.0.0.0/8
        assert _closed_at_once(outsider)
        outsider.close()
    assert "127.0.0.1" in proc.log.read_text() and "closed: not in --allow" in proc.log.read_text()
    with relay(
        tmp_path, echo_server.port, "--allow", "10.0.0.0/8", "--allow", "127.0.0.0/8"
    ) as proc:
        assert round_trip(proc, b"inside") == b"inside"

#!/usr/bin/env python3
"""pwgen-relay: pass TCP connections from one address to another, both ways.

Started per run on a site's login node, it lets compute nodes reach the
HighThroughputExecutor's worker port, which the controller forwards to the login
node's loopback only (`ssh -R 127.0.0.1:P:127.0.0.1:P`):

    pwgen-relay --listen 10.0.0.1:54000 --target 127.0.0.1:54000 --pidfile relay.pid

Every accepted connection gets its own connection to the target; bytes are copied
in both directions until each side has closed its half (half-close is passed on
with shutdown()), so the relay is invisible to the protocol it carries. It never
listens on a wildcard address (0.0.0.0, ::): only on the address given.

Who can connect: anyone who reaches the listen address, i.e. every host of the site's
internal network (other users' jobs included). What they reach is the interchange's
worker port, which only speaks to clients holding the run's CurveZMQ keys (HTEX
encryption is on), but they do get as far as the handshake. So the relay caps how
many connections it holds (`--max-connections`, default 1024: a flood cannot exhaust
the login node's descriptors) and, with `--allow CIDR` (repeatable), closes at once
every connection from outside those networks (e.g. the compute nodes' subnet).

One thread, one selector, non-blocking sockets: an idle connection costs a few
kilobytes, a busy one at most one 256 KiB chunk per direction in flight. Logs
one line per connection to stderr. SIGTERM or SIGINT
(noticed between two events, never in the middle of one) closes everything and
removes the pid file. Standard library only, Python >= 3.8.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import resource
import selectors
import signal
import socket
import sys
import time
from types import FrameType

VERSION = "2"
MAX_CONNECTIONS = 1024  # relayed connections held at once (each costs two descriptors)
CHUNK = 256 * 1024  # bytes read per recv(); one chunk in flight per direction


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{stamp} pwgen-relay[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def parse_endpoint(text: str, option: str) -> tuple[str, int]:
    """`IP:PORT` or `[IPv6]:PORT` -> (ip, port); an IP literal, never a host name."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected IP:PORT (an IP address, not a name)"
        ) from None
    if not sep or not 0 < port < 65536:
        raise UsageError(f"{option} {text!r}: the port must be 1-65535")
    return str(ip), port


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`--allow` CIDR (an address alone is a /32 or /128)."""
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"--allow {text!r}: expected a network such as 10.1.0.0/16") from None


class Pipe:
    """One direction of a relayed connection: bytes read from `src`, written to `dst`."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.pending = b""  # read from src, not yet accepted by dst
        self.eof = False  # src has no more to send
        self.done = False  # eof passed on to dst (shutdown SHUT_WR)
        self.bytes = 0

    def wants_read(self) -> bool:
        return not self.eof and not self.pending

    def pump_read(self) -> None:
        try:
            data = self.src.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
        else:
            self.bytes += len(data)
            self.pending = data
        self.pump_write()

    def pump_write(self) -> None:
        if self.pending:
            try:
                sent = self.dst.send(self.pending)
            except BlockingIOError:
                sent = 0
            self.pending = self.pending[sent:]
        if self.eof and not self.pending and not self.done:
            self.done = True
            self.dst.shutdown(socket.SHUT_WR)


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A compute node that vanishes without a FIN is noticed eventually.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class Connection:
    """A client connection and its connection to the target."""

    def __init__(
        self, client: socket.socket, peer: tuple[str, int], target: tuple[str, int]
    ) -> None:
        self.client = client
        self.peer = peer
        self.started = time.monotonic()
        self.connecting = True
        _tune(client)
        self.server = socket.socket(socket.AF_INET6 if ":" in target[0] else socket.AF_INET)
        try:
            self.server.setblocking(False)
            _tune(self.server)
            code = self.server.connect_ex(target)
            if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
                raise OSError(code, os.strerror(code))
        except OSError:
            self.server.close()
            raise
        self.up = Pipe(client, self.server)  # client -> target
        self.down = Pipe(self.server, client)  # target -> client

    def interest(self, sock: socket.socket) -> int:
        """Selector events this socket waits for now (0: none)."""
        if sock is self.server and self.connecting:
            return selectors.EVENT_WRITE
        if self.connecting:
            return 0  # the client waits until the target answers
        out, into = (self.up, self.down) if sock is self.client else (self.down, self.up)
        events = selectors.EVENT_READ if out.wants_read() else 0
        if into.pending:
            events |= selectors.EVENT_WRITE
        return events

    def handle(self, sock: socket.socket, events: int) -> None:
        if self.connecting:
            code = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            self.connecting = False
            return
        out, into = (self.up, self.down) if sock is self.client else (self.down, self.up)
        if events & selectors.EVENT_WRITE:
            into.pump_write()
        if events & selectors.EVENT_READ:
            out.pump_read()

    @property
    def finished(self) -> bool:
        return self.up.done and self.down.done

    def close(self, why: str) -> None:
        for sock in (self.client, self.server):
            sock.close()
        seconds = time.monotonic() - self.started
        log(
            f"{self.peer[0]}:{self.peer[1]} {why} after {seconds:.1f} s: "
            f"{self.up.bytes} B to target, {self.down.bytes} B back"
        )


class Relay:
    """The listening socket and every open connection, driven by one selector."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        idle_exit: float | None,
        max_connections: int = MAX_CONNECTIONS,
        allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
    ) -> None:
        self.target = target
        self.idle_exit = idle_exit
        self.max_connections = max_connections
        self.allow = allow or []
        self.refused = 0  # connections closed at once (not allowed, or over the cap)
        self.selector = selectors.DefaultSelector()
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(listen)
        self.listener.listen(socket.SOMAXCONN)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.accepting = True
        # A signal writes a byte here (signal.set_wakeup_fd), which wakes select().
        self.wakeup, self.wakeup_writer = socket.socketpair()
        for end in (self.wakeup, self.wakeup_writer):
            end.setblocking(False)
        self.selector.register(self.wakeup, selectors.EVENT_READ)
        self.stopping: str | None = None
        self.owner: dict[socket.socket, Connection] = {}
        self.events: dict[socket.socket, int] = {}
        self.last_active = time.monotonic()

    def stop(self, signum: int, _frame: FrameType | None) -> None:
        """Signal handler: only note the request; serve() ends after the current event."""
        self.stopping = signal.Signals(signum).name

    def serve(self) -> None:
        while self.stopping is None:
            timeout = None
            if self.idle_exit is not None and not self.owner:
                timeout = self.last_active + self.idle_exit - time.monotonic()
                if timeout <= 0:
                    log(f"no connection for {self.idle_exit:g} s: exiting")
                    return
            for key, events in self.selector.select(timeout):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    self.accept()
                elif sock is self.wakeup:
                    self.drain_wakeup()
                elif sock in self.owner:  # not closed earlier in this round
                    self.step(self.owner[sock], sock, events)
        log(f"{self.stopping}: exiting")

    def drain_wakeup(self) -> None:
        try:
            while self.wakeup.recv(64):
                pass
        except BlockingIOError:
            pass

    def accept(self) -> None:
        for _batch in range(64):  # drain the backlog, a bounded batch at a time
            try:
                client, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and friends
                log(f"accept failed: {err}")
                self.pause_accepting()
                return
            client.setblocking(False)
            self.last_active = time.monotonic()
            why = self.refusal(peer[0])
            if why:
                client.close()
                self.note_refused(peer, why)
                continue
            try:
                conn = Connection(client, peer, self.target)
            except OSError as err:
                client.close()
                log(f"{peer[0]}:{peer[1]} target {self.target[0]}:{self.target[1]}: {err}")
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    self.pause_accepting()
                    return
                continue
            self.owner[client] = self.owner[conn.server] = conn
            self.update(conn)

    def refusal(self, address: str) -> str:
        """Why a client is closed at once ("" when it is relayed)."""
        if self.allow and not any(ipaddress.ip_address(address) in net for net in self.allow):
            return "not in --allow"
        if len(self.owner) // 2 >= self.max_connections:  # two sockets per connection
            return f"over --max-connections {self.max_connections}"
        return ""

    def note_refused(self, peer: tuple[str, int], why: str) -> None:
        """Log the first refusals and then every 1000th: a flood must not fill the log."""
        self.refused += 1
        if self.refused <= 10 or self.refused % 1000 == 0:
            log(f"{peer[0]}:{peer[1]} closed: {why} ({self.refused} refused so far)")

    def pause_accepting(self) -> None:
        """Out of descriptors: the listener would stay readable and spin, so stop
        watching it until a connection closes; the open ones are still served."""
        if self.accepting:
            log("out of file descriptors: not accepting until a connection closes")
            self.selector.unregister(self.listener)
            self.accepting = False

    def step(self, conn: Connection, sock: socket.socket, events: int) -> None:
        try:
            conn.handle(sock, events)
        except OSError as err:
            self.drop(conn, f"closed ({err.strerror or err})")
            return
        if conn.finished:
            self.drop(conn, "closed")
        else:
            self.update(conn)

    def update(self, conn: Connection) -> None:
        """Re-register both sockets for what they wait for now."""
        for sock in (conn.client, conn.server):
            wanted, current = conn.interest(sock), self.events.get(sock, 0)
            if wanted == current:
                continue
            if not current:
                self.selector.register(sock, wanted)
            elif not wanted:
                self.selector.unregister(sock)
            else:
                self.selector.modify(sock, wanted)
            self.events[sock] = wanted

    def drop(self, conn: Connection, why: str) -> None:
        for sock in (conn.client, conn.server):
            if self.events.pop(sock, 0):
                self.selector.unregister(sock)
            self.owner.pop(sock, None)
        conn.close(why)
        self.last_active = time.monotonic()
        if not self.accepting:
            self.selector.register(self.listener, selectors.EVENT_READ)
            self.accepting = True

    def close(self) -> None:
        for conn in {id(conn): conn for conn in self.owner.values()}.values():
            self.drop(conn, "closed at exit")
        self.selector.close()
        for sock in (self.listener, self.wakeup, self.wakeup_writer):
            sock.close()


def raise_fd_limit() -> None:
    """Each connection takes two descriptors: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write_pidfile(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def remove_pidfile(path: str) -> None:
    """Remove the pid file if it is still ours (a newer relay may have replaced it)."""
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pwgen-relay",
        description="Relay TCP connections from --listen to --target (pwgen's worker-port relay).",
    )
    parser.add_argument("--listen", required=True, help="IP:PORT to accept on (not a wildcard)")
    parser.add_argument("--target", required=True, help="IP:PORT to connect each client to")
    parser.add_argument("--pidfile", help="write the relay's pid here; removed on exit")
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="exit after this long without any connection",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"relayed connections held at once (default {MAX_CONNECTIONS}); more are closed",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="only relay clients from this network (repeatable; default: any)",
    )
    parser.add_argument("--version", action="version", version=f"pwgen-relay {VERSION}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        listen = parse_endpoint(args.listen, "--listen")
        target = parse_endpoint(args.target, "--target")
        if ipaddress.ip_address(listen[0]).is_unspecified:
            raise UsageError(
                f"--listen {args.listen}: refusing a wildcard address; "
                "give the login node's internal IP"
            )
        if args.idle_exit is not None and args.idle_exit <= 0:
            raise UsageError("--idle-exit must be a positive number of seconds")
        if args.max_connections < 1:
            raise UsageError("--max-connections must be at least 1")
        allow = [parse_network(text) for text in args.allow]
    except UsageError as err:
        sys.stderr.write(f"pwgen-relay: error: {err}\n")
        return 2
    raise_fd_limit()
    try:
        relay = Relay(listen, target, args.idle_exit, args.max_connections, allow)
    except OSError as err:
        sys.stderr.write(f"pwgen-relay: error: cannot listen on {args.listen}: {err}\n")
        return 1
    signal.set_wakeup_fd(relay.wakeup_writer.fileno())
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    try:
        if args.pidfile:
            write_pidfile(args.pidfile)
        log(f"listening on {args.listen}, relaying to {args.target}")
        relay.serve()
    finally:
        relay.close()
        if args.pidfile:
            remove_pidfile(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pwgen.tunnels: the worker-port path from compute nodes to a loopback listener here.

Offline: argument checks and the /proc/net/tcp encoding. Lab (marked `lab`, root): a
provisioned lab of 2 Slurm sites x 2 compute nodes (prefix pwtn, 10.246.0.0/16); a
token server on the controller's 127.0.0.1:P is read from a COMPUTE node through
<login internal IP>:P (relay) -> login 127.0.0.1:P (ssh -R) -> the master; nothing
listens on a wildcard address; a master killed with -9 and a killed relay are
repaired by the supervisor; close() leaves nothing behind on either side.
"""

import contextlib
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run_pwgen
from lab_helpers import (
    lab_ssh_command,
    master_pid,
    netns_connect,
    netns_processes,
    project_ssh,
    provisioned_lab,
    ssh,
    wait_for,
)

from pwgen.facts import SiteFacts, read_facts
from pwgen.lab.procs import alive
from pwgen.lab.state import LabState, SiteRecord
from pwgen.tunnels import SiteTunnel, TunnelError, proc_net_tcp
from pwgen.tunnels.master import ControlMaster

PREFIX, SUBNET = "pwtn", "10.246.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwtn-lab"


# --- offline ---------------------------------------------------------------------------


def testproc_net_tcp_encoding() -> None:
    assert proc_net_tcp("127.0.0.1", 54100) == "0100007F:D354"
    assert proc_net_tcp("10.246.1.1", 22) == "0101F60A:0016"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"internal_address": "0.0.0.0"}, "wildcard"),
        ({"internal_address": "login.example"}, "does not appear to be an IPv4 or IPv6"),
        ({"remote_dir": "relative/dir"}, "must be absolute"),
    ],
)
def test_bad_arguments_are_refused(changes: dict[str, str], message: str) -> None:
    args = {
        "ssh_config": "/nonexistent",
        "host": "site",
        "internal_address": "10.0.0.1",
        "relay": "/opt/pwgen-relay",
        "remote_dir": "/home/u/.pwgen/work",
        **changes,
    }
    with pytest.raises((TunnelError, ValueError), match=message):
        SiteTunnel(**args)


def test_unopened_tunnel_has_no_port_and_closes_quietly() -> None:
    tunnel = SiteTunnel(
        ssh_config="/nonexistent",
        host="site",
        internal_address="10.0.0.1",
        relay="/opt/pwgen-relay",
        remote_dir="/r",
    )
    with pytest.raises(TunnelError, match="no port yet"):
        tunnel.verify_path()
    tunnel.close()  # nothing was started: nothing to stop, no ssh run
    tunnel.close()


# --- lab -------------------------------------------------------------------------------


@dataclass
class Lab:
    state: LabState
    project: Path
    ssh_config: Path

    def site(self, label: str) -> SiteRecord:
        site = self.state.site(label)
        assert site is not None
        return site

    def facts(self, label: str) -> SiteFacts:
        return read_facts(self.project / ".pwgen" / "facts", label)

    def tunnel(self, label: str, **kwargs: object) -> SiteTunnel:
        facts = self.facts(label)
        assert facts.internal_address and facts.relay
        return SiteTunnel(
            ssh_config=str(self.ssh_config),
            host=label,
            internal_address=facts.internal_address,
            relay=facts.relay,
            remote_dir=f"{facts.workdir}/tunnel-test-{secrets.token_hex(3)}",
            check_interval=0.5,
            **kwargs,
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    project = tmp_path_factory.mktemp("tunnels-project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, project, sites=2, compute_nodes=2) as state:
        yield Lab(state, project, project_ssh(project).config)


class TokenServer:
    """Listens on 127.0.0.1:port here; sends each client one line: the token."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = secrets.token_hex(8)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.clients = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients += 1
            with conn:
                conn.sendall(f"{self.token}\n".encode())

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone may leave the
        # listener alive until then, serving the next test that picks the same port.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def read_line_from(netns: str, host: str, port: int) -> str:
    """From inside a node's network namespace: the first line served at host:port."""
    return netns_connect(netns, host, port, "print(s.makefile().readline().strip() or 'EOF')", 2)


def listeners(netns: str | None) -> list[dict[str, str]]:
    """TCP listeners (`ss -ltnpe`) in a namespace (None: the controller's)."""
    prefix = [] if netns is None else ["ip", "netns", "exec", netns]
    out = subprocess.run(
        [*prefix, "ss", "-Hltnpe"], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        uid = re.search(r"uid:(\d+)", line)
        found.append(
            {"local": fields[3], "uid": uid.group(1) if uid else "0", "line": " ".join(fields)}
        )
    return found


@contextlib.contextmanager
def serving(tunnel: SiteTunnel) -> Iterator[TokenServer]:
    """The tunnel open, a token server here behind its port; both closed afterwards."""
    server = TokenServer(tunnel.open())
    try:
        yield server
    finally:
        server.close()
        tunnel.close()


def uid_of(user: str) -> str:
    import pwd

    return str(pwd.getpwnam(user).pw_uid)


@pytest.mark.lab
def test_compute_node_reaches_controller_listener(lab: Lab) -> None:
    site = lab.site("lab1")
    tunnel = lab.tunnel("lab1")
    started = time.monotonic()
    with serving(tunnel) as server:
        opened = time.monotonic() - started
        port = server.port
        assert tunnel.health().ok
        for compute in site.computes:
            assert read_line_from(compute.netns, tunnel.internal_address, port) == server.token
        # Nothing on a wildcard address: here, only loopback for P ...
        here = [entry for entry in listeners(None) if entry["local"].endswith(f":{port}")]
        assert {entry["local"] for entry in here} == {f"127.0.0.1:{port}"}, here
        # ... and on the login node: sshd's forward on loopback, the relay on the
        # internal address, and no listener of the site user on 0.0.0.0/[::]/*.
        login = listeners(site.login.netns)
        on_port = {entry["local"] for entry in login if entry["local"].endswith(f":{port}")}
        assert on_port == {f"127.0.0.1:{port}", f"{tunnel.internal_address}:{port}"}, login
        user = uid_of(site.user)
        wildcard = [
            entry
            for entry in login
            if entry["uid"] == user and re.match(r"(0\.0\.0\.0|\[::\]|\*):", entry["local"])
        ]
        assert wildcard == []
        print(f"\ntunnel open (master up, forward, relay, path verified): {opened:.2f} s")


@pytest.mark.lab
def test_supervisor_repairs_master_and_relay(lab: Lab) -> None:
    site = lab.site("lab2")
    compute = site.computes[0].netns
    tunnel = lab.tunnel("lab2")
    with serving(tunnel) as server:
        port = server.port
        tunnel.start_supervisor()
        # The master dies without a word (its socket stays behind).
        master = tunnel.master_pid()
        assert master is not None
        os.kill(master, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_for(lambda: tunnel.health().ok and bool(tunnel.repairs), timeout=5)
        repaired = time.monotonic() - killed
        assert tunnel.master_pid() not in (None, master)
        assert [r.part for r in tunnel.repairs][:2] == ["master", "forward"]
        assert read_line_from(compute, tunnel.internal_address, port) == server.token

        # The relay dies.
        before = len(tunnel.repairs)
        code, _, _ = tunnel.run(f"kill -9 $(cat {tunnel.pidfile})")
        assert code == 0
        assert wait_for(lambda: len(tunnel.repairs) > before and tunnel.health().ok, timeout=5)
        assert tunnel.repairs[-1].part == "relay"
        assert read_line_from(compute, tunnel.internal_address, port) == server.token
        print(f"\nmaster killed -9: path repaired in {repaired:.2f} s")


@pytest.mark.lab
def test_port_taken_on_login_node_is_skipped(lab: Lab) -> None:
    site = lab.site("lab1")
    taken = 54990
    # Something else (here: a listener of the site user) holds 127.0.0.1:P on the login node.
    # It exits when its stdin closes, i.e. when the ssh client below is killed.
    hold = (
        "import socket, sys; s = socket.socket(); "
        f"s.bind(('127.0.0.1', {taken})); s.listen(); print(1, flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        lab_ssh_command(LAB_DIR, "lab1").remote(f"exec python3 -c {shlex.quote(hold)}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        fixed = lab.tunnel("lab1", port=taken)
        with pytest.raises(TunnelError, match=r"no usable worker port.*forward refused"):
            fixed.open()
        fixed.close()
        chooser = lab.tunnel("lab1", port_range=(taken, taken + 2))
        try:
            assert chooser.open() == taken + 1
        finally:
            chooser.close()
    finally:
        holder.kill()
        holder.wait()
    assert netns_processes(site.login.netns, f"--listen {chooser.internal_address}:") == []


@pytest.mark.lab
def test_close_leaves_nothing_running(lab: Lab) -> None:
    tunnels = [lab.tunnel(label) for label in ("lab1", "lab2")]
    ports = [tunnel.open() for tunnel in tunnels]
    for tunnel in tunnels:
        tunnel.start_supervisor()
    masters = [tunnel.master_pid() for tunnel in tunnels]
    assert all(masters)
    logins = [lab.site(label).login.netns for label in ("lab1", "lab2")]
    for netns, tunnel in zip(logins, tunnels, strict=True):
        assert netns_processes(netns, f"--listen {tunnel.relay_address} ")
    for tunnel in tunnels:
        tunnel.close()
    for master in masters:
        assert wait_for(lambda pid=master: not alive(pid), timeout=5)
    for tunnel in tunnels:
        assert tunnel.master_pid() is None
        assert not os.path.exists(tunnel.control_path())
    for netns, port in zip(logins, ports, strict=True):
        assert netns_processes(netns, "pwgen-relay") == []
        assert not [e for e in listeners(netns) if e["local"].endswith(f":{port}")]
    # The relay's pid file is gone; its log stays for the record.
    listed = ssh(LAB_DIR, "lab1", f"ls {shlex.quote(tunnels[0].remote_dir)}")
    assert listed.split() == ["relay.log"]
    assert [t.repairs for t in tunnels] == [[], []]


# A second pwgen process that shares lab1's master, uses it and finishes, as a run's
# tunnel does at its end (release, and stop when it was the last user); then a
# site-side run's ending (SshSetup.stop_master).
OTHER_RUN = """
import sys
from pathlib import Path
from pwgen.ssh import SshSetup
from pwgen.tunnels.master import ControlMaster
config = sys.argv[1]
master = ControlMaster(ssh_config=config, host="lab1", connect_timeout=10, log_file=None)
print(master.ensure(), flush=True)
master.register()
last = master.release()
if last:
    master.stop()
SshSetup(Path(config), Path(config).with_name("known_hosts")).stop_master("lab1")
print("last user" if last else "not the last user")
"""


def test_a_finishing_run_leaves_the_master_another_run_uses(lab: Lab) -> None:
    """Two runs on one site share its master: the one that ends first must not stop it."""
    master = ControlMaster(
        ssh_config=str(lab.ssh_config), host="lab1", connect_timeout=10, log_file=None
    )
    master.ensure()
    master.register()
    pid = master.pid()
    try:
        other = subprocess.run(
            [sys.executable, "-c", OTHER_RUN, str(lab.ssh_config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert other.stdout.splitlines() == [
            f"master pid {pid} already running",
            "not the last user",
        ]
        assert master.pid() == pid, "the other run stopped a master this run still uses"
        assert master.run("echo still here")[1] == "still here\n"
    finally:
        last = master.release()
        if last:
            master.stop()
    assert last and master.pid() is None  # the last user stops it


@pytest.mark.lab
def test_a_master_the_user_holds_open_outlives_pwgen_runs(lab: Lab) -> None:
    """`pwgen ssh open` (how an MFA site is used): the master the user opened is joined
    by pwgen and not stopped when the last pwgen user of it ends; `close` stops it."""
    sites = str(LAB_DIR / "sites.yaml")
    opened = run_pwgen("ssh", "open", "lab2", "--sites", sites, cwd=lab.project)
    assert opened.returncode == 0, opened.stderr
    command = project_ssh(lab.project).command("lab2")
    pid = master_pid(command)
    assert f"lab2: master pid {pid} held open" in opened.stdout
    other = subprocess.run(  # a pwgen run on the site: it joins, then lets go
        [sys.executable, "-c", OTHER_RUN.replace('"lab1"', '"lab2"'), str(lab.ssh_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert other.stdout.splitlines() == [f"master pid {pid} already running", "not the last user"]
    assert master_pid(command) == pid
    closed = run_pwgen("ssh", "close", "lab2", cwd=lab.project)
    assert closed.returncode == 0 and "lab2: master stopped" in closed.stdout, closed.stderr
    gone = subprocess.run(command.control("check"), capture_output=True, check=False)
    assert gone.returncode != 0


@pytest.mark.lab
def test_the_relay_serves_only_the_allowed_networks(lab: Lab) -> None:
    """relay_allow: a compute node outside the allowed networks is closed at the relay."""
    site = lab.site("lab1")
    allowed, other = site.computes[0], site.computes[1]
    tunnel = lab.tunnel("lab1", relay_allow=[f"{allowed.ip}/32"])
    port = tunnel.open()
    server = TokenServer(port)
    try:
        assert read_line_from(allowed.netns, tunnel.internal_address, port) == server.token
        assert read_line_from(other.netns, tunnel.internal_address, port) != server.token
    finally:
        server.close()
        tunnel.close()

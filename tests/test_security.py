"""Security of provisioning and of a run on two lab sites, watched from outside while it goes.

`pwgen provision` and `pwgen run` get a recognisable fake PW_API_KEY in their
environment. While they work, a watcher thread samples the whole machine: every
process's argv (/proc/*/cmdline), the environment of every process of the site users,
ansible-runner's private dir (provision) and the TCP listeners here and on both login
nodes (run). The run's workflow holds one task on each site's compute node until the
test releases it, so the samples see workers, relays, forwards and certificates live.

Checked: (a) nothing the run opens listens beyond loopback here, and on the login nodes
only the forward (127.0.0.1) and the relay (the internal address) are new; (b) the key
is in no process's argv, no site process's environment, no runner artifact, no file of
the project's .pwgen/ and no file on the sites; (c) the certificate copies on the sites
are 0700 dirs owned by the site user with 0600 files, removed after the run; (d) the
local ssh state, facts, run dir, client key and certificates are private.
"""

import base64
import json
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import PWGEN
from lab_helpers import masters_stopped, project_ssh, running_lab, ssh, wait_for

from pwgen.lab.state import LabState
from pwgen.ssh import control_dir

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwsec", "10.238.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-security-lab"
SITES = str(LAB_DIR / "sites.yaml")
LABELS = ("lab1", "lab2")
_HOST = base64.urlsafe_b64encode(b"cloud.example.org").decode().rstrip("=")
API_KEY = f"pwt_{_HOST}.{secrets.token_hex(16)}"
# The key, and its secret half alone (as a URL-quoted or split key would still show it).
NEEDLES = (API_KEY.encode(), API_KEY.split(".", 1)[1].encode())
WORKER_PORTS = range(54000, 55001)  # SiteHighThroughputExecutor's default worker_port_range
LOOPBACK = ("127.", "[::ffff:127.", "[::1]")
WILDCARD = ("0.0.0.0:", "[::]:", "*:", "[::ffff:0.0.0.0]:")

# One task per site, each holding its worker until the test creates ~/pwsec-release.
HOLD = """\
import parsl
from parsl import python_app


def hold(label):
    import os, socket, time
    home = os.path.expanduser("~")
    open(os.path.join(home, "pwsec-started-" + label), "w").close()
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(home, "pwsec-release")) and time.time() < deadline:
        time.sleep(0.2)
    return socket.gethostname()


labels = sorted(label for label in parsl.dfk().executors if not label.startswith("_"))
futures = {label: python_app(hold, executors=[label])(label) for label in labels}
for label, future in futures.items():
    print(label, "ran on", future.result(), flush=True)
"""


# ---------------------------------------------------------------- watching the machine


def _proc(pid: str, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _leaks(data: bytes) -> bool:
    return any(needle in data for needle in NEEDLES)


def _listeners(netns: str | None = None) -> list[str]:
    """`ss -ltnpH` lines, here or in a lab node's network namespace."""
    argv = ["ss", "-ltnpH"]
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    return [" ".join(line.split()) for line in done.stdout.splitlines()]


def _local_address(line: str) -> str:
    return line.split()[3]


def _pids_of(line: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"pid=(\d+)", line)}


@dataclass
class Watch:
    """What the watcher saw; filled by a thread until `stop()`."""

    root_pid: int
    control_paths: tuple[str, ...] = ()
    site_uids: frozenset[int] = frozenset()
    login_netns: dict[str, str] = field(default_factory=dict)  # label -> netns
    runner_marker: bytes = b""  # ansible-runner dirs whose inventory holds this are ours
    samples: int = 0
    processes_seen: int = 0
    site_processes_seen: int = 0
    argv_leaks: list[str] = field(default_factory=list)
    environ_leaks: list[str] = field(default_factory=list)
    runner_dirs: set[str] = field(default_factory=set)
    runner_files: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> size, mtime
    runner_leaks: list[str] = field(default_factory=list)
    ours_listening: set[str] = field(default_factory=set)  # controller lines of our processes
    login_listening: dict[str, set[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # a sample that failed
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Watch":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wait_samples(self, count: int) -> None:
        target = self.samples + count
        assert wait_for(lambda: self.samples >= target, timeout=60), self.errors

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception as err:  # shown by the tests, not lost with the thread
                self.errors.append(repr(err))
            else:
                self.samples += 1
            self._stop.wait(0.1)

    def _sample(self) -> None:
        parents: dict[int, int] = {}
        cmdlines: dict[int, bytes] = {}
        for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
            self.processes_seen += 1
            cmdlines[int(pid)] = cmdline = _proc(pid, "cmdline")
            if _leaks(cmdline):
                self.argv_leaks.append(f"{pid}: {cmdline!r}")
            self._check_site_environ(pid)
            fields = _proc(pid, "stat").rsplit(b")", 1)[-1].split()
            if len(fields) > 1:
                parents[int(pid)] = int(fields[1])
        if self.runner_marker:
            self._check_runner_dirs()
        if self.login_netns:
            self._record_listeners(self._our_pids(parents, cmdlines))

    def _check_site_environ(self, pid: str) -> None:
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            return
        if uid in self.site_uids:
            self.site_processes_seen += 1
            if _leaks(_proc(pid, "environ")):
                self.environ_leaks.append(f"{pid}: {_proc(pid, 'cmdline')!r}")

    def _check_runner_dirs(self) -> None:
        for private in Path(tempfile.gettempdir()).glob("pwgen-runner-*"):
            try:
                if self.runner_marker not in (private / "inventory.json").read_bytes():
                    continue  # another project's provisioning
            except OSError:
                continue
            self.runner_dirs.add(str(private))
            for path in private.rglob("*"):
                try:
                    info = path.stat()
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    seen = (info.st_size, info.st_mtime_ns)
                    if self.runner_files.get(str(path)) == seen:
                        continue  # read already, unchanged
                    data = path.read_bytes()
                except OSError:
                    continue
                self.runner_files[str(path)] = seen
                if _leaks(data):
                    self.runner_leaks.append(str(path))

    def _our_pids(self, parents: dict[int, int], cmdlines: dict[int, bytes]) -> set[int]:
        """The run's process tree, plus the ssh masters of the project's ssh config."""
        ours = _descendants(parents, self.root_pid)
        for pid, cmdline in cmdlines.items():
            if any(path.encode() in cmdline for path in self.control_paths):
                ours.add(pid)
        return ours

    def _record_listeners(self, ours: set[int]) -> None:
        for line in _listeners():
            if _pids_of(line) & ours:
                self.ours_listening.add(line)
        for label, netns in self.login_netns.items():
            self.login_listening.setdefault(label, set()).update(_listeners(netns))


def _descendants(parents: dict[int, int], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# ---------------------------------------------------------------- provision, then one run


def _env() -> dict[str, str]:
    """The environment of `run_pwgen`, plus the key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PW_", "PWGEN_"))}
    return {**env, "PW_API_KEY": API_KEY}


def _site_uids(lab: LabState) -> frozenset[int]:
    return frozenset(pwd.getpwnam(site.user).pw_uid for site in lab.sites)


def _home(lab: LabState, label: str) -> Path:
    """A site user's home (shared by the site's nodes) as seen from here."""
    site = lab.site(label)
    assert site is not None
    home = Path(site.site_dir) / "home" / site.user
    assert home.is_dir(), f"the lab keeps {label}'s home elsewhere than {home}"
    return home


def _control_paths(project: Path) -> tuple[str, ...]:
    """The ControlPath of every site in the project's ssh config (`ssh -G` expands it)."""
    paths = []
    for label in LABELS:
        argv = project_ssh(project).command(label).query()
        shown = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        paths += [
            line.split(None, 1)[1] for line in shown.splitlines() if line.startswith("controlpath ")
        ]
    return tuple(paths)


def _popen(project: Path, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [str(PWGEN), *args],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: "subprocess.Popen[str]", watch: Watch, timeout: float) -> tuple[str, str]:
    """Wait for pwgen (Ctrl-C it if the test failed first); stop watching."""
    try:
        if proc.returncode is not None:  # already waited for, its output already shown
            return "", ""
        return proc.communicate(timeout=timeout)
    finally:
        watch.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)


@dataclass
class Provisioned:
    project: Path
    lab: LabState
    watch: Watch


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    """Both lab sites provisioned by `pwgen provision` with the key in its environment."""
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=1) as lab:
        project = tmp_path_factory.mktemp("project")
        proc = _popen(project, "provision", "--sites", SITES, "--json")
        marker = lab.sites[0].user.encode()  # in the runner inventory of this project only
        watch = Watch(root_pid=proc.pid, site_uids=_site_uids(lab), runner_marker=marker)
        out, err = _finish(proc, watch.start(), timeout=900)
        assert proc.returncode == 0, out + err
        with masters_stopped(project, LABELS):
            yield Provisioned(project, lab, watch)


@dataclass
class Observed:
    """One run of HOLD, and what was seen before, during and after it."""

    project: Path
    lab: LabState
    watch: Watch
    returncode: int
    stdout: str
    stderr: str
    controller_before: set[str]
    login_before: dict[str, set[str]]
    certificates: dict[str, list[str]]  # label -> `find` lines while the tasks ran
    certificates_after: dict[str, list[str]]


def _facts(project: Path, label: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / f".pwgen/facts/{label}.json").read_text())
    return data


def _remote_certificates(project: Path, label: str) -> list[str]:
    """`mode owner type path` of every certificate dir and file under the site's workdir."""
    workdir = _facts(project, label)["workdir"]
    found = ssh(LAB_DIR, label, f"find {workdir} -path '*/certificates*' -printf '%m %u %y %p\\n'")
    return found.splitlines()


def _while_tasks_hold(
    proc: "subprocess.Popen[str]", watch: Watch, lab: LabState, project: Path
) -> dict[str, list[str]]:
    """Wait for both tasks to run, let the watcher sample, see the certificates, release."""
    started = [_home(lab, label) / f"pwsec-started-{label}" for label in LABELS]
    running = wait_for(lambda: proc.poll() is not None or all(p.exists() for p in started), 300)
    if not running or proc.poll() is not None:
        out, err = proc.communicate(timeout=120) if running else ("", "")
        pytest.fail(f"the tasks did not start on both sites: {out}{err}")
    watch.wait_samples(3)  # a few samples with both workers busy
    certificates = {label: _remote_certificates(project, label) for label in LABELS}
    for label in LABELS:
        (_home(lab, label) / "pwsec-release").touch()
    return certificates


@pytest.fixture(scope="module")
def observed(provisioned: Provisioned) -> Observed:
    project, lab = provisioned.project, provisioned.lab
    (project / "hold.py").write_text(HOLD)
    logins = {site.label: site.login.netns for site in lab.sites}
    controller_before = {_local_address(line) for line in _listeners()}
    login_before = {
        label: {_local_address(line) for line in _listeners(netns)}
        for label, netns in logins.items()
    }
    proc = _popen(project, "run", "hold.py", "--sites", SITES)
    watch = Watch(
        root_pid=proc.pid,
        control_paths=_control_paths(project),
        site_uids=_site_uids(lab),
        login_netns=logins,
    ).start()
    try:
        certificates = _while_tasks_hold(proc, watch, lab, project)
    finally:
        out, err = _finish(proc, watch, timeout=300)
    return Observed(
        project=project,
        lab=lab,
        watch=watch,
        returncode=proc.returncode,
        stdout=out,
        stderr=err,
        controller_before=controller_before,
        login_before=login_before,
        certificates=certificates,
        certificates_after={label: _remote_certificates(project, label) for label in LABELS},
    )


# ---------------------------------------------------------------- the checks


def test_the_run_used_both_sites_and_was_watched(
    provisioned: Provisioned, observed: Observed
) -> None:
    assert observed.returncode == 0, observed.stdout + observed.stderr
    for label in LABELS:
        assert f"{label} ran on {label}-c1" in observed.stdout, observed.stdout
    for watch in (provisioned.watch, observed.watch):
        assert not watch.errors, watch.errors
        assert watch.samples >= 3 and watch.processes_seen > 0 and watch.site_processes_seen > 0


def test_no_listener_beyond_loopback_on_the_controller(observed: Observed) -> None:
    new = [
        line
        for line in observed.watch.ours_listening
        if _local_address(line) not in observed.controller_before
    ]
    assert new, "the watcher saw none of the run's listeners (the interchange's, at least)"
    beyond = [line for line in new if not _local_address(line).startswith(LOOPBACK)]
    assert not beyond, beyond


def test_login_nodes_get_only_the_forward_and_the_relay(observed: Observed) -> None:
    for label in LABELS:
        internal = _facts(observed.project, label)["internal_address"]
        seen = {_local_address(line) for line in observed.watch.login_listening[label]}
        new = seen - observed.login_before[label]
        assert not [address for address in new if address.startswith(WILDCARD)], new
        hosts = {address.rsplit(":", 1)[0] for address in new}
        ports = {int(address.rsplit(":", 1)[1]) for address in new}
        assert hosts == {"127.0.0.1", internal}, new  # the -R forward and the relay
        assert all(port in WORKER_PORTS for port in ports), new
        old_in_range = [
            address
            for address in observed.login_before[label]
            if int(address.rsplit(":", 1)[1]) in WORKER_PORTS and address.startswith(WILDCARD)
        ]
        assert not old_in_range


def test_key_in_no_process_argv(provisioned: Provisioned, observed: Observed) -> None:
    for watch in (provisioned.watch, observed.watch):
        assert not watch.argv_leaks, watch.argv_leaks


def test_key_never_reaches_a_site_process(provisioned: Provisioned, observed: Observed) -> None:
    for watch in (provisioned.watch, observed.watch):
        assert not watch.environ_leaks, watch.environ_leaks


def test_key_not_in_runner_artifacts(provisioned: Provisioned) -> None:
    watch = provisioned.watch
    assert any(re.search(r"/artifacts/[^/]+/command$", path) for path in watch.runner_files), (
        "ansible-runner's artifacts were not seen while provisioning"
    )
    assert not watch.runner_leaks, watch.runner_leaks
    assert not [path for path in watch.runner_dirs if Path(path).exists()], "private dir left"


def _files_holding_the_key(root: Path) -> tuple[int, list[str]]:
    read, leaks = 0, []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            read += 1
            if _leaks(path.read_bytes()):
                leaks.append(str(path))
    return read, leaks


def test_key_in_no_file_here_or_on_the_sites(observed: Observed) -> None:
    state = observed.project / ".pwgen"
    read, leaks = _files_holding_the_key(state)
    assert not leaks, leaks
    assert list(state.glob("runs/*/runinfo/*/parsl.log")) and list(
        state.glob("runs/*/manifest.json")
    )
    assert read > 10
    for label in LABELS:  # the site's run dirs, worker logs, submit scripts, env
        read, leaks = _files_holding_the_key(_home(observed.lab, label))
        assert not leaks, leaks
        assert read > 10


def test_site_certificates_are_private_and_removed(observed: Observed) -> None:
    for label in LABELS:
        user = observed.lab.site(label).user  # type: ignore[union-attr]
        entries = [line.split(" ", 3) for line in observed.certificates[label]]
        dirs = [entry for entry in entries if entry[2] == "d"]
        files = [entry for entry in entries if entry[2] == "f"]
        assert len(dirs) == 1 and len(files) >= 4, observed.certificates[label]
        assert dirs[0][:2] == ["700", user], dirs
        assert all(entry[:2] == ["600", user] for entry in files), files
        assert observed.certificates_after[label] == [], "certificates left on the site"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_ssh_state_and_client_key_are_private(observed: Observed) -> None:
    state = observed.project / ".pwgen"
    assert _mode(state / "ssh") == 0o700
    assert {p.name: _mode(p) for p in (state / "ssh").iterdir()} == {
        "config": 0o600,
        "known_hosts": 0o600,
    }
    assert _mode(state / "facts") == 0o700
    assert {_mode(path) for path in (state / "facts").iterdir()} == {0o600}
    (run_dir,) = (state / "runs").iterdir()
    assert _mode(run_dir) == 0o700
    identity = Path(yaml.safe_load(Path(SITES).read_text())["sites"][0]["identity_file"])
    assert _mode(identity) == 0o600  # the ssh client key the sites file names
    assert _mode(control_dir()) == 0o700  # the ControlMaster sockets


def test_local_certificate_keys_are_0600(observed: Observed) -> None:
    cert_dirs = list((observed.project / ".pwgen").glob("runs/*/runinfo/*/*/certificates"))
    assert len(cert_dirs) == len(LABELS), cert_dirs
    for cert_dir in cert_dirs:
        assert _mode(cert_dir) == 0o700
        keys = {path.name: _mode(path) for path in cert_dir.iterdir()}
        assert keys and set(keys.values()) == {0o600}, keys

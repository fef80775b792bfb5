"""`pwgen status`: the project's sites, tunnels, blocks and last runs. Read-only.

What it looks at:

    .pwgen/runs/<id>/manifest.json      what `pwgen run` recorded (written at the end of a
                                        run; a run killed with -9 has none, or one without
                                        `finished`)
    .pwgen/runs/<id>/runinfo/NNN/       Parsl's run dir: `parsl.log` ("Run id is: <uuid>",
                                        the name of the run's dir on the sites),
                                        `<label>/interchange.log` ("Bound to port P": the
                                        worker port), `submit_scripts/<job name>` (one per
                                        block: the exact Slurm/PBS job names of the run)
    .pwgen/facts/<label>.json           env hash, Parsl, Python, the site's workdir
    /proc                               this user's processes holding files of a run
    each site, over ssh (one call)      the user's jobs, pwgen-relay and worker-pool
                                        processes, loopback listeners, cert copies

A run is *running* while its controller lives: the `pid` of its manifest (if the
manifest has one) is alive and started no later than the run, or else a process of
this user other than Parsl's helpers and ssh writes to a file of the run (the
DataFlowKernel keeps `parsl.log` open for writing). A run without `finished` whose controller is
gone is *crashed*: `pwgen teardown` cleans up after it.

Attribution (what belongs to this project), used by `pwgen teardown` too:

* controller processes: this user's processes writing to a file under this
  project's `.pwgen/runs/<id>/` (interchange, Parsl and ssh processes: also naming
  or reading one), and the descendants of interchange and Parsl helpers. The
  interchange keeps `<run>/runinfo/NNN/<label>/interchange.log` open for writing;
  a local worker pool names its `--logdir` under the run.
* blocks: a job is a run's when its name is the name of one of the run's local
  submit scripts (`parsl.<label>.block-<n>.<submit time>`, unique per submission).
  Other `parsl.*` jobs of the site user are shown without a run (another project,
  or a run dir that was deleted) and never cancelled.
* relays and cert copies: under `<workdir>/<parsl run uuid>/<label>/` on the site;
  the uuid comes from the run's `parsl.log` (and the dir from its submit scripts).

Status never starts an ssh master: remote calls use `ControlMaster=no` (the site's
master when one runs, else a direct connection), with short timeouts, all sites in
parallel. An unreachable site is reported as such.
"""

import contextlib
import json
import os
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pwgen.tunnels.master import ControlMaster

if TYPE_CHECKING:
    from pwgen.sites import Site

RUNS_DIR = "runs"
FACTS_DIR = "facts"
SSH_CONFIG = Path("ssh") / "config"
#: ssh ConnectTimeout for status and teardown calls, in seconds.
CONNECT_TIMEOUT = 5
#: Seconds a remote status probe may take on the site.
PROBE_TIMEOUT = 10
#: A run dir younger than this, with no manifest and no process, is still starting.
STARTING_GRACE = 30.0
#: Largest part of a `parsl.log` read to find the run's uuid.
_PARSL_LOG_LIMIT = 4_000_000

_RUN_UUID = re.compile(r"Run id is: ([0-9a-f-]{36})")
_BOUND_PORT = re.compile(r"Bound to port (\d+) for incoming worker connections")
_LOGDIR_ARG = re.compile(r"--logdir=(\S+)")
_JOB_NAME = re.compile(r"^parsl\.(?P<label>[A-Za-z_][A-Za-z0-9_]*)\.block-\d+\.[0-9.]+$")

# Scheduler states in which a block no longer needs cancelling.
_DONE_STATES = frozenset(
    {
        "COMPLETED",
        "COMPLETING",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "EXITING",
        "FINISHED",
        "EXPIRED",
    }
)
_PBS_STATES = {
    "Q": "PENDING",
    "R": "RUNNING",
    "H": "HELD",
    "W": "WAITING",
    "T": "TRANSIT",
    "S": "SUSPENDED",
    "U": "SUSPENDED",
    "B": "RUNNING",
    "E": "EXITING",
    "F": "FINISHED",
    "X": "EXPIRED",
}


# ---------------------------------------------------------------- controller processes


@dataclass(frozen=True)
class LocalProcess:
    """A process of this user on the controller that belongs to a run of the project.

    kind: `interchange`, `parsl` (a worker pool or another Parsl helper), `ssh`, or
    `controller` (anything else: normally the `pwgen run` process itself).
    """

    pid: int
    ppid: int
    kind: str
    run_id: str
    command: str


def process_kind(command: str) -> str:
    """What a process is, from its command line (`/proc/<pid>/cmdline`, spaces for NULs)."""
    argv = command.split()
    first = os.path.basename(argv[0]) if argv else ""
    if "HTEX interchange" in command or any(
        os.path.basename(arg) == "interchange.py" for arg in argv[:3]
    ):
        return "interchange"
    if command.startswith("parsl:") or "process_worker_pool" in command:
        return "parsl"
    if first == "ssh" or command.startswith("ssh:"):
        return "ssh"
    return "controller"


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _run_of_path(path: str, prefixes: Sequence[str]) -> str | None:
    for prefix in prefixes:
        if path.startswith(prefix):
            run = path[len(prefix) :].split("/", 1)[0]
            return run or None
    return None


def _writing(pid: int, fd: str) -> bool:
    """Whether the process holds descriptor `fd` open for writing (/proc/<pid>/fdinfo)."""
    try:
        info = _read(f"/proc/{pid}/fdinfo/{fd}").decode(errors="replace")
    except OSError:
        return False
    for line in info.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return False


def _run_of_process(pid: int, command: str, prefixes: Sequence[str]) -> tuple[str | None, bool]:
    """(run, writing): the run whose dir the process names in its arguments or holds open,
    and whether it holds one of that run's files open for writing."""
    named = None
    for arg in command.split():
        named = _run_of_path(arg.split("=", 1)[-1], prefixes)
        if named:
            break
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return named, False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found = _run_of_path(target, prefixes) if target.startswith("/") else None
        if found:
            if _writing(pid, fd):
                return found, True
            named = named or found
    return named, False


def _prefixes(runs_dir: Path) -> list[str]:
    """`<runs dir>/` as processes may see it (resolved and as given, if they differ)."""
    seen: list[str] = []
    for path in (runs_dir.resolve(), runs_dir.absolute()):
        prefix = str(path).rstrip("/") + "/"
        if prefix not in seen:
            seen.append(prefix)
    return seen


def _proc_status(pid: int) -> tuple[int, int, str] | None:
    """(real uid, ppid, state) of a process, None if it is gone."""
    try:
        status = _read(f"/proc/{pid}/status").decode(errors="replace")
    except OSError:
        return None
    uid = ppid = -1
    state = "?"
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("PPid:"):
            ppid = int(line.split()[1])
        elif line.startswith("State:"):
            state = line.split()[1]
    return uid, ppid, state


def scan_processes(runs_dir: Path) -> list[LocalProcess]:
    """This user's live processes that belong to a run under `runs_dir` (one /proc pass).

    A process belongs to run `<id>` when it writes to a file under `<runs_dir>/<id>/`
    (the DataFlowKernel to `parsl.log`, the interchange to `interchange.log`), when it
    is an interchange, Parsl or ssh process that names or opens such a file, or when
    it descends from an interchange or Parsl helper that does (the worker processes of
    a local pool). Other users' processes and zombies are never listed.
    """
    prefixes = _prefixes(runs_dir)
    me, uid = os.getpid(), os.getuid()
    table: dict[int, tuple[int, str]] = {}
    owner: dict[int, str] = {}
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return []
    for name in entries:
        pid = int(name)
        if pid == me:
            continue
        status = _proc_status(pid)
        if status is None or status[0] != uid or status[2] == "Z":
            continue
        try:
            command = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        command = command.strip()
        if not command:  # kernel threads
            continue
        table[pid] = (status[1], command)
        run, writing = _run_of_process(pid, command, prefixes)
        # Anything but Parsl's helpers and ssh must write into the run to count (as its
        # controller): `tail -f .../parsl.log` or an editor does not keep a run alive.
        if run is not None and (writing or process_kind(command) != "controller"):
            owner[pid] = run
    found = []
    for pid, (ppid, command) in table.items():
        kind = process_kind(command)
        run = owner.get(pid)
        if run is None:
            run = _helper_ancestor_run(ppid, table, owner)
            if kind == "controller":
                kind = "parsl"  # a worker process of a local pool, say
        if run is not None:
            found.append(LocalProcess(pid, ppid, kind, run, command))
    return sorted(found, key=lambda proc: proc.pid)


def _helper_ancestor_run(
    ppid: int, table: Mapping[int, tuple[int, str]], owner: Mapping[int, str]
) -> str | None:
    seen: set[int] = set()
    while ppid in table and ppid not in seen:
        seen.add(ppid)
        parent, command = table[ppid]
        if ppid in owner and process_kind(command) in ("interchange", "parsl"):
            return owner[ppid]
        ppid = parent
    return None


def pid_alive(pid: int, started_by: float | None = None) -> bool:
    """Process `pid` exists and is not a zombie (and, given `started_by`, is not a later
    process that reused the pid: it started no later than `started_by` + 5 s)."""
    try:
        stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    if not fields or fields[0] in ("Z", "X"):
        return False
    if started_by is not None:
        start = _process_start(fields)
        if start is not None and start > started_by + 5:
            return False
    return True


def _process_start(fields: Sequence[str]) -> float | None:
    """Start time (epoch seconds) from the fields of /proc/<pid>/stat after the name."""
    try:
        ticks = int(fields[19])  # field 22 of stat, counting pid and comm
        boot = next(
            float(line.split()[1])
            for line in _read("/proc/stat").decode().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- runs


@dataclass
class RunSite:
    """What a run left (or may have left) on one remote site."""

    label: str
    scheduler: str
    # <workdir>/<parsl run uuid>/<label>: relay pid file and log, certificates, worker logs.
    site_dirs: list[str] = field(default_factory=list)
    port: int | None = None
    job_names: list[str] = field(default_factory=list)


@dataclass
class RunInfo:
    """One run of the project, from its manifest and Parsl's run dir.

    state: `ok` (exit 0), `failed` (another exit code), `interrupted` (130),
    `running`, `crashed` (no `finished` and the controller is gone), or
    `crashed, torn down` once `pwgen teardown` cleaned up after it.
    """

    run_id: str
    path: str
    state: str
    workflow: str | None
    labels: list[str]
    started: float | None
    finished: float | None
    exit_code: int | str | None
    pid: int | None
    torn_down: float | None
    parsl_run_ids: list[str]
    remote: dict[str, RunSite]
    controller_pids: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished if self.finished is not None else None
        if end is None and self.state == "running":
            end = time.time()
        return None if end is None else max(0.0, end - self.started)

    @property
    def alive(self) -> bool:
        return self.state in ("running", "starting")

    @property
    def unfinished(self) -> bool:
        """Neither finished nor torn down: crashed runs that still need `pwgen teardown`."""
        return self.finished is None and self.torn_down is None and not self.alive


def read_manifest(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, error): (None, None) when the run has no manifest (yet)."""
    path = run_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path}: unreadable manifest: {err}"
    if not isinstance(data, dict):
        return None, f"{path}: manifest is not a JSON object"
    return data, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else None


def _started_from_id(run_id: str) -> float | None:
    """pwgen's run ids start with the local start time: YYYYmmdd-HHMMSS-xxxxxx."""
    try:
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None


def _runinfo_dirs(run_dir: Path) -> list[Path]:
    runinfo = run_dir / "runinfo"
    try:
        return sorted(path for path in runinfo.iterdir() if path.is_dir())
    except OSError:
        return []


def parsl_run_ids(run_dir: Path) -> list[str]:
    """The DataFlowKernel run ids (uuids) of the run, from its `parsl.log` files."""
    found: list[str] = []
    for numbered in _runinfo_dirs(run_dir):
        try:
            with open(numbered / "parsl.log", encoding="utf-8", errors="replace") as log:
                read = 0
                for line in log:
                    read += len(line)
                    match = _RUN_UUID.search(line)
                    if match:
                        found.append(match.group(1))
                        break
                    if read > _PARSL_LOG_LIMIT:
                        break
        except OSError:
            continue
    return found


def _port_of(run_dir: Path, label: str) -> int | None:
    for numbered in reversed(_runinfo_dirs(run_dir)):
        try:
            text = (numbered / label / "interchange.log").read_text(errors="replace")
        except OSError:
            continue
        match = _BOUND_PORT.search(text)
        if match:
            return int(match.group(1))
    return None


def submit_scripts(run_dir: Path) -> dict[str, list[Path]]:
    """The run's local copies of its block submit scripts, per site label."""
    scripts: dict[str, list[Path]] = {}
    for numbered in _runinfo_dirs(run_dir):
        try:
            names = sorted(os.listdir(numbered / "submit_scripts"))
        except OSError:
            continue
        for name in names:
            match = _JOB_NAME.match(name)
            if match:
                scripts.setdefault(match.group("label"), []).append(
                    numbered / "submit_scripts" / name
                )
    return scripts


def _labels_without_manifest(run_dir: Path) -> list[str]:
    """Sites of a run that wrote no manifest: its executors' log dirs in runinfo/."""
    labels: set[str] = set()
    for numbered in _runinfo_dirs(run_dir):
        with contextlib.suppress(OSError):
            labels.update(
                path.name
                for path in numbered.iterdir()
                if path.is_dir() and path.name != "submit_scripts"
            )
    labels.update(submit_scripts(run_dir))
    return sorted(label for label in labels if label.isidentifier())


def _site_entries(manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    sites = manifest.get("sites") if manifest else None
    if not isinstance(sites, list):
        return []
    entries = []
    for site in sites:
        if isinstance(site, dict) and isinstance(site.get("label"), str):
            entries.append(site)
        elif isinstance(site, str):
            entries.append({"label": site})
    return entries


def _facts_of(
    label: str, manifest: Mapping[str, Any] | None, facts_dir: Path
) -> dict[str, Any] | None:
    """The facts the run used (its manifest), else the project's current ones."""
    recorded = manifest.get("facts") if manifest else None
    if isinstance(recorded, dict) and isinstance(recorded.get(label), dict):
        found: dict[str, Any] = recorded[label]
        return found
    try:
        data = json.loads((facts_dir / f"{label}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def describe_run(
    run_dir: Path,
    facts_dir: Path,
    processes: Sequence[LocalProcess] = (),
    now: float | None = None,
    details: bool | None = None,
) -> RunInfo:
    """Everything known about one run dir; `processes` are the run's processes here.

    `details`: also read what the run may have left on its sites (Parsl run ids, ports,
    job names, remote dirs); None: only for runs that are running or crashed.
    """
    run_id = run_dir.name
    manifest, error = read_manifest(run_dir)
    data: Mapping[str, Any] = manifest or {}
    started = _number(data.get("started")) or _started_from_id(run_id)
    finished = _number(data.get("finished"))
    torn_down = _number(data.get("torn_down"))
    exit_code = data.get("exit_code")
    pid = data.get("pid") if isinstance(data.get("pid"), int) else None
    entries = _site_entries(manifest)
    if manifest is not None and entries:
        labels = [entry["label"] for entry in entries]
        schedulers = {entry["label"]: str(entry.get("scheduler", "")) for entry in entries}
    else:
        labels = _labels_without_manifest(run_dir)
        schedulers = {}
    controllers = [proc.pid for proc in processes if proc.kind == "controller"]
    state = _run_state(
        run_dir, finished, exit_code, torn_down, pid, started, controllers, manifest, now
    )
    if details is None:
        details = state in ("running", "starting", "crashed")
    uuids = parsl_run_ids(run_dir) if details else []
    scripts = submit_scripts(run_dir) if details else {}
    remote: dict[str, RunSite] = {}
    for label in labels if details else []:
        if schedulers.get(label) == "local":
            continue
        facts = _facts_of(label, manifest, facts_dir)
        if facts is None and label not in scripts:
            continue  # a local site (no facts, no ssh)
        scheduler = schedulers.get(label) or str((facts or {}).get("scheduler") or "slurm")
        site = RunSite(label=label, scheduler=scheduler, port=_port_of(run_dir, label))
        workdir = (facts or {}).get("workdir")
        if isinstance(workdir, str) and workdir.startswith("/"):
            site.site_dirs += [f"{workdir.rstrip('/')}/{uuid}/{label}" for uuid in uuids]
        for script in scripts.get(label, []):
            site.job_names.append(script.name)
            with contextlib.suppress(OSError):
                match = _LOGDIR_ARG.search(script.read_text(errors="replace"))
                if match and match.group(1) not in site.site_dirs:
                    site.site_dirs.append(match.group(1))
        remote[label] = site
    workflow = data.get("workflow")
    return RunInfo(
        run_id=run_id,
        path=str(run_dir),
        state=state,
        workflow=workflow if isinstance(workflow, str) else None,
        labels=labels,
        started=started,
        finished=finished,
        exit_code=exit_code if isinstance(exit_code, int | str) else None,
        pid=pid,
        torn_down=torn_down,
        parsl_run_ids=uuids,
        remote=remote,
        controller_pids=controllers,
        error=error,
    )


def _run_state(
    run_dir: Path,
    finished: float | None,
    exit_code: Any,
    torn_down: float | None,
    pid: int | None,
    started: float | None,
    controllers: Sequence[int],
    manifest: Mapping[str, Any] | None,
    now: float | None,
) -> str:
    if finished is not None:
        if exit_code == 0:
            return "ok"
        return "interrupted" if exit_code == 130 else "failed"
    if torn_down is not None:
        return "crashed, torn down"
    if pid is not None:
        return "running" if pid_alive(pid, started) else "crashed"
    if controllers:
        return "running"
    if manifest is None and not (run_dir / "runinfo").exists():
        # Before the DataFlowKernel opens parsl.log (preflight), nothing holds its files.
        with contextlib.suppress(OSError):
            age = (now if now is not None else time.time()) - run_dir.stat().st_mtime
            if age < STARTING_GRACE:
                return "starting"
    return "crashed"


def list_runs(state_dir: Path, processes: Sequence[LocalProcess] | None = None) -> list[RunInfo]:
    """Every run of the project, newest first (`processes`: from `scan_processes`)."""
    runs_dir = state_dir / RUNS_DIR
    try:
        run_dirs = [path for path in runs_dir.iterdir() if path.is_dir()]
    except OSError:
        return []
    if processes is None:
        processes = scan_processes(runs_dir)
    by_run: dict[str, list[LocalProcess]] = {}
    for proc in processes:
        by_run.setdefault(proc.run_id, []).append(proc)
    facts_dir = state_dir / FACTS_DIR
    runs = [describe_run(path, facts_dir, by_run.get(path.name, [])) for path in run_dirs]
    return sorted(runs, key=lambda run: (run.started or 0.0, run.run_id), reverse=True)


# ---------------------------------------------------------------- sites, over ssh


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    state: str
    run_id: str | None = None  # this project's run that submitted it, if any

    @property
    def active(self) -> bool:
        return self.state not in _DONE_STATES


@dataclass(frozen=True)
class RemoteProcess:
    pid: int
    command: str


@dataclass
class SiteProbe:
    """What one ssh call saw on a site's login node."""

    ok: bool
    error: str | None = None
    user: str | None = None
    uid: int | None = None
    jobs: list[Job] = field(default_factory=list)
    jobs_error: str | None = None
    relays: list[RemoteProcess] = field(default_factory=list)
    pools: list[RemoteProcess] = field(default_factory=list)
    # (port, uid) of every TCP socket listening on 127.0.0.1.
    loopback: list[tuple[int, int]] = field(default_factory=list)
    cert_dirs: list[str] = field(default_factory=list)


def jobs_command(scheduler: str) -> str:
    """Shell that prints `job|<id>|<name>|<state>` for every job of the site user."""
    if scheduler == "pbspro":
        return (
            'ids=$(qselect -u "$u" 2>/dev/null | tr "\\n" " "); '
            'if [ -n "${ids// }" ]; then qstat -f $ids 2>/dev/null | awk '
            "'/^Job Id:/{id=$3} /Job_Name =/{name=$3} "
            '/job_state =/{print "job|" id "|" name "|" $3}\'; fi'
        )
    return (
        "if out=$(squeue -h -u \"$u\" -o '%i|%j|%T' 2>&1); "
        'then printf "%s\\n" "$out" | sed "/./s/^/job|/"; '
        'else echo "jobs_error|$(printf "%s" "$out" | tr "\\n" " ")"; fi'
    )


def probe_script(scheduler: str, site_dirs: Iterable[str]) -> str:
    """One bash snippet for the login node: jobs, relays, pools, listeners, cert copies."""
    dirs = " ".join(shlex.quote(path) for path in site_dirs)
    return "\n".join(
        [
            'u=$(id -un); echo "user|$u|$(id -u)"',
            jobs_command(scheduler),
            # Zombies (state Z) are dead: a slow reaper keeps them listed for a while.
            'ps -u "$u" -o pid=,stat=,args= '
            "| awk '$2 !~ /^Z/ && /[p]wgen-relay|[p]rocess_worker_pool/ "
            '{ $2 = ""; print "proc|" $0 }\'',
            'awk \'NR > 1 && $4 == "0A" && $2 ~ /^0100007F:/ '
            '{ print "listen|" $2 "|" $8 }\' /proc/net/tcp',
            f'for d in {dirs}; do [ -d "$d/certificates" ] && echo "certs|$d"; done',
            'echo "end|"',
        ]
    )


def parse_probe(output: str, scheduler: str = "slurm") -> SiteProbe:
    """Turn the probe's lines into a SiteProbe (lines of other shapes are ignored)."""
    probe = SiteProbe(ok=False)
    for line in output.splitlines():
        kind, _, rest = line.partition("|")
        parts = rest.split("|")
        if kind == "user" and len(parts) == 2:
            probe.user = parts[0]
            with contextlib.suppress(ValueError):
                probe.uid = int(parts[1])
        elif kind == "job" and len(parts) == 3:
            state = parts[2].strip()
            if scheduler == "pbspro":
                state = _PBS_STATES.get(state, state)
            probe.jobs.append(Job(parts[0].strip(), parts[1].strip(), state))
        elif kind == "jobs_error":
            probe.jobs_error = rest.strip() or "the job list failed"
        elif kind == "proc":
            pid, _, command = rest.strip().partition(" ")
            if pid.isdigit():
                target = probe.relays if "pwgen-relay" in command else probe.pools
                target.append(RemoteProcess(int(pid), command.strip()))
        elif kind == "listen" and len(parts) == 2:
            with contextlib.suppress(ValueError, IndexError):
                port = int(parts[0].split(":")[1], 16)
                probe.loopback.append((port, int(parts[1])))
        elif kind == "certs":
            probe.cert_dirs.append(rest)
        elif kind == "end":
            probe.ok = True
    if not probe.ok:
        probe.error = "the site did not answer the status probe"
    return probe


def relay_pidfile_of(command: str) -> str | None:
    """The `--pidfile` of a pwgen-relay command line."""
    argv = command.split()
    for index, arg in enumerate(argv[:-1]):
        if arg == "--pidfile":
            return argv[index + 1]
    return None


def site_master(ssh_config: Path, label: str) -> ControlMaster:
    """The site's master as pwgen's tunnels see it (never started by status/teardown)."""
    return ControlMaster(
        ssh_config=str(ssh_config.resolve()),
        host=label,
        connect_timeout=CONNECT_TIMEOUT,
        log_file=None,
    )


def run_on_site(ssh_config: Path, label: str, script: str, timeout: float) -> tuple[int, str, str]:
    """Run `script` on the login node through its master if one runs, else directly.

    `ControlMaster=no`: never becomes a master. (exit, stdout, stderr); 255: ssh failed.
    """
    return site_master(ssh_config, label).run(script, timeout=timeout)


def probe_site(
    ssh_config: Path, label: str, scheduler: str, site_dirs: Iterable[str] = ()
) -> SiteProbe:
    """Jobs, relays, pools, listeners and cert copies on one site; never raises."""
    try:
        code, out, err = run_on_site(
            ssh_config, label, probe_script(scheduler, site_dirs), PROBE_TIMEOUT
        )
    except OSError as err_:
        return SiteProbe(ok=False, error=f"cannot run ssh: {err_}")
    probe = parse_probe(out, scheduler)
    if code != 0 or not probe.ok:
        detail = " ".join(err.split()[-30:]) or f"exit {code}"
        probe.ok = False
        probe.error = f"unreachable: {detail}"
    return probe


def master_pid(ssh_config: Path, label: str) -> int | None:
    """The pid of the site's running ssh master (`ssh -O check`), else None."""
    if not ssh_config.is_file():
        return None
    try:
        return site_master(ssh_config, label).pid()
    except OSError:
        return None


# ---------------------------------------------------------------- status report


@dataclass
class TunnelHealth:
    """A live or crashed run's worker-port path on one site."""

    run_id: str
    run_state: str
    port: int | None
    forward: bool  # something listens on the login node's 127.0.0.1:port
    relay_pid: int | None  # the run's pwgen-relay, if it runs
    certs: bool  # the run's cert copy is still on the site


@dataclass
class SiteStatus:
    label: str
    scheduler: str
    local: bool = False
    facts: dict[str, Any] | None = None
    facts_error: str | None = None
    master_pid: int | None = None
    reachable: bool | None = None
    error: str | None = None
    user: str | None = None
    blocks: list[Job] = field(default_factory=list)
    blocks_error: str | None = None
    tunnels: list[TunnelHealth] = field(default_factory=list)
    worker_pools: int = 0


@dataclass
class StatusReport:
    state_dir: str
    ssh_config: str | None
    sites: list[SiteStatus]
    runs: list[RunInfo]
    controller: list[LocalProcess]
    elapsed: float = 0.0


def _facts_summary(facts_dir: Path, label: str) -> tuple[dict[str, Any] | None, str | None]:
    path = facts_dir / f"{label}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no facts: run `pwgen provision`"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path}: unreadable: {err}"
    if not isinstance(data, dict):
        return None, f"{path}: not a JSON object"
    env: dict[str, Any] = data["env"] if isinstance(data.get("env"), dict) else {}
    python: dict[str, Any] = data["python"] if isinstance(data.get("python"), dict) else {}
    return {
        "env_hash": env.get("hash"),
        "env_path": env.get("path") or data.get("env_path"),
        "parsl": data.get("parsl_version"),
        "python": python.get("version"),
        "scheduler": data.get("scheduler"),
        "workdir": data.get("workdir"),
        "gathered_at": data.get("gathered_at"),
    }, None


def _site_labels(
    sites: "Sequence[Site] | None", facts_dir: Path
) -> list[tuple[str, str | None, bool]]:
    """(label, scheduler, local) of the sites to show: the sites file's, else those with facts."""
    if sites is not None:
        return [(site.label, site.scheduler, site.is_local) for site in sites]
    try:
        names = sorted(path.stem for path in facts_dir.glob("*.json"))
    except OSError:
        names = []
    return [(name, None, False) for name in names]


def gather_status(
    state_dir: Path, sites: "Sequence[Site] | None" = None, last: int = 10
) -> StatusReport:
    """Sites (facts, master, blocks, tunnels), the last `last` runs, orphaned processes."""
    clock = time.monotonic()
    runs_dir = state_dir / RUNS_DIR
    facts_dir = state_dir / FACTS_DIR
    ssh_config = state_dir / SSH_CONFIG
    processes = scan_processes(runs_dir)
    runs = list_runs(state_dir, processes)
    live_or_crashed = [run for run in runs if run.alive or run.unfinished]
    job_owner = {
        name: run.run_id for run in runs for site in run.remote.values() for name in site.job_names
    }
    statuses: list[SiteStatus] = []
    for label, scheduler, local in _site_labels(sites, facts_dir):
        status = SiteStatus(label=label, scheduler=scheduler or "", local=local)
        if not local:
            status.facts, status.facts_error = _facts_summary(facts_dir, label)
            if not status.scheduler:
                status.scheduler = str((status.facts or {}).get("scheduler") or "slurm")
        statuses.append(status)
    remote = [status for status in statuses if not status.local]
    if remote and ssh_config.is_file():
        with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
            for _ in pool.map(
                lambda s: _fill_site(s, ssh_config, live_or_crashed, job_owner), remote
            ):
                pass
    else:
        for status in remote:
            status.reachable = False
            status.error = f"no {ssh_config}: run `pwgen provision` first"
    return StatusReport(
        state_dir=str(state_dir),
        ssh_config=str(ssh_config) if ssh_config.is_file() else None,
        sites=statuses,
        runs=runs[: max(0, last)],
        controller=[proc for proc in processes if proc.kind != "controller"],
        elapsed=time.monotonic() - clock,
    )


def _fill_site(
    status: SiteStatus,
    ssh_config: Path,
    runs: Sequence[RunInfo],
    job_owner: Mapping[str, str],
) -> None:
    try:
        _probe_into(status, ssh_config, runs, job_owner)
    except Exception as err:  # status shows every site, whatever happens on one
        status.reachable = False
        status.error = f"status failed: {err!r}"


def _probe_into(
    status: SiteStatus,
    ssh_config: Path,
    runs: Sequence[RunInfo],
    job_owner: Mapping[str, str],
) -> None:
    status.master_pid = master_pid(ssh_config, status.label)
    mine = [(run, run.remote[status.label]) for run in runs if status.label in run.remote]
    dirs = [path for _, site in mine for path in site.site_dirs]
    probe = probe_site(ssh_config, status.label, status.scheduler, dirs)
    status.reachable = probe.ok
    status.error = probe.error
    status.user = probe.user
    if not probe.ok:
        return
    status.blocks_error = probe.jobs_error
    status.blocks = [
        Job(job.job_id, job.name, job.state, job_owner.get(job.name))
        for job in probe.jobs
        if job.name.startswith("parsl.")
    ]
    status.worker_pools = len(probe.pools)
    relays = {relay_pidfile_of(relay.command): relay.pid for relay in probe.relays}
    for run, site in mine:
        relay_pid = next(
            (relays[f"{d}/relay.pid"] for d in site.site_dirs if f"{d}/relay.pid" in relays),
            None,
        )
        status.tunnels.append(
            TunnelHealth(
                run_id=run.run_id,
                run_state=run.state,
                port=site.port,
                forward=site.port is not None
                and any(port == site.port for port, _ in probe.loopback),
                relay_pid=relay_pid,
                certs=any(d in probe.cert_dirs for d in site.site_dirs),
            )
        )


def status_json(report: StatusReport) -> dict[str, Any]:
    """The report as plain JSON types (runs get `duration`)."""
    data = asdict(report)
    for run, raw in zip(report.runs, data["runs"], strict=True):
        raw["duration"] = run.duration
    return data


# ---------------------------------------------------------------- rendering


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


_STATE_STYLE = {
    "ok": "green",
    "running": "cyan",
    "starting": "cyan",
    "crashed": "red",
    "failed": "red",
    "interrupted": "yellow",
    "crashed, torn down": "yellow",
}


def _styled(text: str, style: str | None) -> str:
    """`text` (escaped: never read as rich markup) in `style`."""
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def sites_table(report: StatusReport) -> Table:
    table = Table(title=escape(f"sites ({report.state_dir})"), title_justify="left")
    for column in ("site", "facts", "ssh master", "reachable", "blocks"):
        table.add_column(column, no_wrap=column == "site")
    for site in report.sites:
        if site.local:
            table.add_row(site.label, "local site", "", "this machine", "")
            continue
        facts = site.facts or {}
        facts_text = (
            _styled(
                f"env {facts.get('env_hash') or '?'}, Parsl {facts.get('parsl') or '?'}, "
                f"Python {facts.get('python') or '?'}",
                None,
            )
            if site.facts
            else _styled(site.facts_error or "none", "red")
        )
        master = f"pid {site.master_pid}" if site.master_pid else "none"
        if site.reachable:
            reachable = _styled("yes" + (f" ({site.user})" if site.user else ""), None)
        else:
            reachable = _styled(f"no: {site.error or ''}", "red")
        counts: dict[str, int] = {}
        for job in site.blocks:
            counts[job.state] = counts.get(job.state, 0) + 1
        blocks = escape(", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())))
        if site.blocks_error:
            blocks = _styled(f"? ({site.blocks_error})", "red")
        table.add_row(site.label, facts_text, master, reachable, blocks or "-")
    return table


def tunnels_table(report: StatusReport) -> Table | None:
    """The worker-port path of every running or crashed run, per site."""
    rows = [(site.label, tunnel) for site in report.sites for tunnel in site.tunnels]
    if not rows:
        return None
    table = Table(title="tunnels of running and crashed runs", title_justify="left")
    for column in ("site", "run", "state", "port", "forward", "relay", "cert copy"):
        table.add_column(column, no_wrap=column == "run")
    for label, tunnel in rows:
        table.add_row(
            label,
            tunnel.run_id,
            _styled(tunnel.run_state, _STATE_STYLE.get(tunnel.run_state)),
            str(tunnel.port or "?"),
            "up" if tunnel.forward else "down",
            f"pid {tunnel.relay_pid}" if tunnel.relay_pid else "down",
            "yes" if tunnel.certs else "no",
        )
    return table


def blocks_table(report: StatusReport) -> Table | None:
    rows = [(site.label, job) for site in report.sites for job in site.blocks]
    if not rows:
        return None
    table = Table(title="blocks (parsl.* jobs of the site users)", title_justify="left")
    for column in ("site", "job", "name", "state", "run"):
        table.add_column(column, no_wrap=column == "run")
    for label, job in rows:
        table.add_row(
            label,
            escape(job.job_id),
            escape(job.name),
            escape(job.state),
            job.run_id or "(not this project)",
        )
    return table


def runs_table(report: StatusReport) -> Table:
    table = Table(title=f"last {len(report.runs)} runs", title_justify="left")
    for column in ("run", "workflow", "state", "exit", "duration", "sites"):
        table.add_column(column, no_wrap=column == "run")
    for run in report.runs:
        table.add_row(
            run.run_id,
            escape(os.path.basename(run.workflow)) if run.workflow else "?",
            _styled(run.state, _STATE_STYLE.get(run.state)),
            "" if run.exit_code is None else str(run.exit_code),
            _seconds(run.duration),
            escape(", ".join(run.labels)),
        )
    return table


def controller_table(report: StatusReport) -> Table | None:
    if not report.controller:
        return None
    table = Table(title="Parsl and ssh processes of runs, here", title_justify="left")
    for column in ("pid", "kind", "run", "command"):
        table.add_column(column)
    for proc in report.controller:
        table.add_row(str(proc.pid), proc.kind, escape(proc.run_id), escape(proc.command[:80]))
    return table


def print_status(report: StatusReport, console: Console | None = None) -> None:
    """The status as rich tables (sites, tunnels, blocks, runs, processes) on stdout."""
    out = console or Console(highlight=False)
    if report.sites:
        out.print(sites_table(report))
    else:
        out.print("no sites: no sites file and no facts in " + report.state_dir, markup=False)
    for table in (tunnels_table(report), blocks_table(report)):
        if table is not None:
            out.print(table)
    if report.runs:
        out.print(runs_table(report))
    else:
        out.print("no runs yet", markup=False)
    controller = controller_table(report)
    if controller is not None:
        out.print(controller)
    crashed = [run.run_id for run in report.runs if run.state == "crashed"]
    if crashed:
        out.print(
            f"crashed run(s) {', '.join(crashed)}: clean up with `pwgen teardown`", markup=False
        )

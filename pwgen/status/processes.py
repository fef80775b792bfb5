"""Local process attribution: this user's processes of a run, found through /proc."""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


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
    # Run as a script, or by pwgen's guard (`interchange_guard.py PID N ... -- SCRIPT`),
    # until Parsl renames the process "parsl: HTEX interchange".
    guarded = [os.path.basename(arg) for arg in argv[1:2]] == ["interchange_guard.py"]
    script = argv[argv.index("--") + 1 : argv.index("--") + 2] if "--" in argv else []
    if "HTEX interchange" in command or any(
        os.path.basename(arg) == "interchange.py" for arg in (script if guarded else argv[:3])
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
        helper_run = _helper_ancestor_run(ppid, table, owner)
        run = owner.get(pid) or helper_run
        if kind == "controller" and helper_run is not None:
            # A local pool's worker, multiprocessing manager or resource tracker: it writes
            # to the block's stdout too, but it is the pool's, and outlives a TERMed pool.
            kind = "parsl"
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

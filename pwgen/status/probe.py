"""The site status probe: its shell script for the login node and the parser of its output."""

import contextlib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

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
            # A run's private copies on the site: its certificates and staged data.
            f'for d in {dirs}; do [ -d "$d/certificates" ] || [ -d "$d/staging" ] '
            '&& echo "certs|$d"; done',
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

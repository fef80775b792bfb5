"""PBS sites of the lab: OpenPBS daemons in the nodes of a site, instead of Slurm's.

Login node: pbs_comm, pbs_server with its postgres datastore, pbs_sched (and sshd,
as on a Slurm site). Compute nodes: pbs_mom, which reaches pbs_comm over TPP.
Each node has its own /etc/pbs.conf and PBS_HOME (/var/spool/pbs), bound from

    <site>/pbs/<node>/pbs.conf    -> /etc/pbs.conf
    <site>/pbs/<node>/spool/      -> /var/spool/pbs (PBS_TMPDIR is its tmp/)

and a private /var/tmp (PBS writes fixed names there), so two PBS sites never
share a file and `down` leaves none. The bind targets must exist in the root
mount namespace: `up` makes them empty, `down` removes them once no node mounts onto them.
"""

import contextlib
import json
import os
import pwd
from collections.abc import Sequence
from pathlib import Path

from pwgen.lab import pbs_mpich
from pwgen.lab.daemons import Daemon, pid_of
from pwgen.lab.errors import LabError
from pwgen.lab.nodes import enter
from pwgen.lab.pbs_build import VERSION
from pwgen.lab.plan import SitePlan
from pwgen.lab.state import NodeRecord, SiteRecord
from pwgen.lab.system import run
from pwgen.lab.templating import make_dir, write_if_changed
from pwgen.lab.wait import wait_until

SCHEDULER = "pbspro"  # the `scheduler:` of a PBS site in sites.yaml
PBS_HOME = "/var/spool/pbs"
CONF_TARGET = Path("/etc/pbs.conf")
HOME_TARGET = Path(PBS_HOME)
DATA_USER = "postgres"
DEFAULT_QUEUE = "workq"  # made by pbs_server on its first start
DEBUG_QUEUE = "debug"
DEBUG_WALLTIME = "00:30:00"  # as the Slurm sites' debug partition
SERVER_PORT = 15001
# Running means its lock file (in PBS_HOME) names a live process of this name.
SERVER = Daemon("pbs_server.bin", ("login",), f"{PBS_HOME}/server_priv/server.lock")
DATASTORE = Daemon("postgres", ("login",), f"{PBS_HOME}/datastore/postmaster.pid")
SCHED = Daemon("pbs_sched", ("login",), f"{PBS_HOME}/sched_priv/sched.lock")
COMM = Daemon("pbs_comm", ("login",), f"{PBS_HOME}/server_priv/comm.lock")
MOM = Daemon("pbs_mom", ("compute",), f"{PBS_HOME}/mom_priv/mom.lock")
DAEMONS = (COMM, DATASTORE, SERVER, SCHED, MOM)
# pbsnodes states of a node that answers and can run (or is running) jobs.
_READY_STATES = {"free", "job-busy", "job-exclusive", "resv-exclusive"}


def is_pbs(site: SiteRecord | SitePlan) -> bool:
    return site.scheduler == SCHEDULER


def node_mounts(site: Path) -> list[str]:
    """The mounts node-init.sh adds in a PBS site's nodes, for lab.json and `status`."""
    return [
        f"/etc/pbs.conf <- {site}/pbs/<node>/pbs.conf",
        f"/var/spool/pbs <- {site}/pbs/<node>/spool",
        "/var/tmp <- tmpfs (private to the node)",
    ]


def write_files(plan: SitePlan, site: Path, prefix: Path) -> None:
    """Per-node pbs.conf and PBS_HOME, and the user's PATH to the PBS commands."""
    ensure_bind_targets()
    for node in plan.nodes:
        directory = site / "pbs" / node.name
        make_dir(directory)
        make_dir(directory / "spool")
        make_dir(directory / "spool" / "tmp", 0o1777)
        write_if_changed(directory / "pbs.conf", pbs_conf(plan, node.role, prefix))
    pbs_mpich.write_files(prefix)
    mpich = pbs_mpich.profile_lines(prefix)
    _user_path(site / "home" / plan.user, plan.user, prefix / "bin", mpich)


def _user_path(home: Path, user: str, bin_dir: Path, mpich: str) -> None:
    """qsub & co. on the site user's PATH, and MPICH (pwgen.lab.pbs_mpich): ~/.bashrc for
    ssh commands (Debian's bash reads it for them: Ansible's modules), ~/.profile for
    login shells (pwgen's `bash -lc`, PBS's job shells)."""
    account = pwd.getpwnam(user)
    path = f'case ":$PATH:" in *":{bin_dir}:"*) ;; *) export PATH="$PATH:{bin_dir}" ;; esac\n'
    files = {".bashrc": path + mpich, ".profile": '. "$HOME/.bashrc"\n'}
    for name, text in files.items():
        write_if_changed(home / name, text)
        os.chown(home / name, account.pw_uid, account.pw_gid)


def pbs_conf(plan: SitePlan, role: str, prefix: Path) -> str:
    server = int(role == "login")
    values = {
        "PBS_SERVER": plan.login.name,
        "PBS_START_SERVER": server,
        "PBS_START_SCHED": server,
        "PBS_START_COMM": server,
        "PBS_START_MOM": 1 - server,
        "PBS_EXEC": prefix,
        "PBS_HOME": PBS_HOME,
        "PBS_CORE_LIMIT": "unlimited",
        "PBS_SCP": "/usr/bin/scp",
        # Per node: qsub's daemon socket and .pbs_last_query_<uid> stay in the node.
        "PBS_TMPDIR": f"{PBS_HOME}/tmp",
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def ensure_bind_targets() -> None:
    """/etc/pbs.conf and /var/spool/pbs as mount points (left alone if they exist)."""
    if not CONF_TARGET.exists():
        CONF_TARGET.touch(0o644)
    HOME_TARGET.mkdir(parents=True, exist_ok=True)


def release_bind_targets() -> None:
    """Remove the bind targets `up` made, once no node (of any lab) mounts onto them."""
    if bind_targets_in_use():
        return
    with contextlib.suppress(OSError):
        if CONF_TARGET.is_file() and CONF_TARGET.stat().st_size == 0:
            CONF_TARGET.unlink()
    with contextlib.suppress(OSError):
        HOME_TARGET.rmdir()  # only if empty: a real PBS install keeps its own


def bind_targets_in_use() -> bool:
    """Whether some mount namespace (a PBS node of any lab) has a mount on a bind target."""
    targets = {str(CONF_TARGET), str(HOME_TARGET)}
    seen: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            namespace = os.readlink(f"/proc/{entry}/ns/mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            mounts = Path(f"/proc/{entry}/mountinfo").read_text(encoding="utf-8")
        except OSError:
            continue
        if any(line.split()[4] in targets for line in mounts.splitlines()):
            return True
    return False


def in_node(
    node: NodeRecord, prefix: Path, argv: Sequence[str], timeout: float = 60, check: bool = True
) -> str:
    """Run a command in the node as root with PBS's PATH and nothing else of ours."""
    path = f"{prefix}/bin:{prefix}/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = ["env", "-i", f"PATH={path}", "HOME=/root", "LANG=C.UTF-8"]
    return run([*enter(node), *env, *argv], timeout=timeout, check=check)


def _logged(node: NodeRecord, site: SiteRecord, prefix: Path, argv: list[str]) -> None:
    """Run a command whose daemons inherit its output: into the node's log, not a pipe."""
    log = f"/run/lab/log/{node.name}-pbs.log"
    script = 'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null'
    try:
        in_node(node, prefix, ["sh", "-c", script, "sh", log, *argv], timeout=120)
    except LabError as err:
        raise LabError(f"{err} (see {Path(site.site_dir) / 'log' / Path(log).name})") from None


def _postinstall(node: NodeRecord, site: SiteRecord, prefix: Path) -> None:
    """PBS_HOME's skeleton (once per node); `sameconf` leaves /etc/pbs.conf alone."""
    spool = Path(site.site_dir) / "pbs" / node.name / "spool"
    if (spool / "pbs_environment").exists():
        return
    script = f"{prefix}/libexec/pbs_postinstall"
    if node.role == "login":
        args = ["server", VERSION, str(prefix), PBS_HOME, DATA_USER, "sameconf"]
    else:
        args = ["execution", VERSION, str(prefix), PBS_HOME, "sameconf"]
    _logged(node, site, prefix, [script, *args])
    if node.role == "compute":
        config = spool / "mom_priv" / "config"
        # The shared home: stage-out by cp, not scp between nodes.
        with config.open("a", encoding="utf-8") as stream:
            stream.write("$usecp *:/home/ /home/\n")


def running(node: NodeRecord) -> dict[str, bool]:
    """Which of the node's PBS daemons run."""
    return {d.name: pid_of(node, d) is not None for d in DAEMONS if node.role in d.roles}


def ensure_sites(sites: Sequence[SiteRecord], prefix: Path) -> list[str]:
    """Start what is not running on every PBS site (login nodes first); what was started."""
    started = []
    for role in ("login", "compute"):
        for site in sites:
            for node in (n for n in site.nodes if n.role == role):
                _postinstall(node, site, prefix)
                if not all(running(node).values()):
                    _logged(node, site, prefix, [f"{prefix}/libexec/pbs_init.d", "start"])
                    started.append(f"started PBS on {node.name}")
            if role == "login":
                configure_server(site, prefix)
    for site in sites:
        wait_nodes_free(site, prefix)
    return started


def _qmgr(site: SiteRecord, prefix: Path, command: str) -> str:
    return in_node(site.login, prefix, ["qmgr", "-c", command], timeout=30)


def configure_server(site: SiteRecord, prefix: Path) -> None:
    """Job history (Parsl's provider runs `qstat -x`), the compute nodes, queue debug."""
    _qmgr(site, prefix, "set server job_history_enable = True")
    known = set(_pbsnodes(site, prefix))
    for node in site.computes:
        if node.name not in known:
            _qmgr(site, prefix, f"create node {node.name}")
    queues = in_node(site.login, prefix, ["qstat", "-Q"], timeout=30)
    if not any(line.split()[:1] == [DEBUG_QUEUE] for line in queues.splitlines()):
        _qmgr(site, prefix, f"create queue {DEBUG_QUEUE} queue_type = execution")
        _qmgr(site, prefix, f"set queue {DEBUG_QUEUE} resources_max.walltime = {DEBUG_WALLTIME}")
        _qmgr(site, prefix, f"set queue {DEBUG_QUEUE} enabled = True")
        _qmgr(site, prefix, f"set queue {DEBUG_QUEUE} started = True")


def _pbsnodes(site: SiteRecord, prefix: Path) -> dict[str, str]:
    """Each node's state, as pbsnodes reports it on the login node."""
    out = in_node(site.login, prefix, ["pbsnodes", "-a", "-F", "json"], timeout=15, check=False)
    try:
        found = json.loads(out).get("nodes", {})
    except ValueError:
        return {}
    return {name: str(info.get("state", "")) for name, info in found.items()}


def wait_nodes_free(site: SiteRecord, prefix: Path, timeout: float = 60) -> None:
    def ready() -> bool:
        states = _pbsnodes(site, prefix)
        return all(
            set(states.get(node.name, "down").split(",")) <= _READY_STATES for node in site.computes
        )

    try:
        wait_until(ready, f"the PBS compute nodes of {site.label} to be free", timeout)
    except LabError as err:
        raise LabError(f"{err}: pbsnodes says {_pbsnodes(site, prefix)}") from None


def stop_site(site: SiteRecord, prefix: Path) -> None:
    """Stop PBS cleanly (the datastore's postgres above all), compute nodes first."""
    for node in reversed(site.nodes):
        if node.holder_pid is not None and any(running(node).values()):
            in_node(node, prefix, [f"{prefix}/libexec/pbs_init.d", "stop"], 90, check=False)


def pbsnodes_summary(site: SiteRecord, prefix: Path) -> str:
    """`pbsnodes: 2 free; queues: workq, debug`, asked on the login node."""
    states = _pbsnodes(site, prefix)
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    nodes = ", ".join(f"{count} {state}" for state, count in counts.items()) or "none"
    try:
        out = in_node(site.login, prefix, ["qstat", "-Q"], timeout=10)
    except LabError as err:
        return f"pbsnodes: {nodes}; qstat failed: {err}"
    queues = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    return f"pbsnodes: {nodes}; queues: {', '.join(queues)}"

"""A site's directory: its configs, keys and home, bound into every node of the site.

<state>/sites/<label>/
    etc/slurm/slurm.conf      -> /etc/slurm in the nodes
    etc/munge/munge.key       -> /etc/munge (one key per site: sites can't talk)
    etc/hosts                 -> /etc/hosts
    etc/sshd_config, etc/ssh_host_ed25519_key, etc/node-init.sh
    home/<user>/              -> /home (the site's shared home, like NFS)
    log/                      every daemon's log, per node
    slurmctld/                slurmctld's state
"""

import os
import pwd
import shutil
from pathlib import Path

from pwgen.lab.nodes import INIT_SCRIPT
from pwgen.lab.plan import SitePlan
from pwgen.lab.system import Hardware, run
from pwgen.lab.templating import make_dir, render, write_if_changed

MUNGE_USER = "munge"
HOST_KEY = "etc/ssh_host_ed25519_key"
RUN_SIZE = "64m"


def site_dir(state_dir: Path, label: str) -> Path:
    return state_dir / "sites" / label


def node_mounts(site: Path, extra: list[str] | None = None) -> list[str]:
    """What node-init.sh mounts in each node (and `extra`), for lab.json and `status`."""
    return [
        "/run <- tmpfs (private to the node)",
        f"/run/lab <- {site}",
        f"/etc/hosts <- {site}/etc/hosts",
        f"/etc/slurm <- {site}/etc/slurm",
        f"/etc/munge <- {site}/etc/munge",
        f"/home <- {site}/home",
        *(extra or []),
    ]


def write_site(plan: SitePlan, site: Path, hw: Hardware, client_pubkey: str, prefix: str) -> bool:
    """Create or update the site dir; True when slurm.conf changed."""
    munge = pwd.getpwnam(MUNGE_USER)
    make_dir(site)
    etc = site / "etc"
    make_dir(etc)
    make_dir(etc / "slurm")
    make_dir(etc / "munge", 0o700, munge.pw_uid, munge.pw_gid)
    _munge_key(etc / "munge" / "munge.key", munge)
    _host_key(site / HOST_KEY, plan.login.name)
    write_if_changed(etc / "hosts", render("hosts.j2", site=plan))
    listen = [plan.login_ip, plan.login.ip]
    write_if_changed(etc / "sshd_config", render("sshd_config.j2", site=plan, listen=listen))
    pbs = plan.scheduler == "pbspro"  # pwgen.lab.pbs: its own mounts
    init = render(
        "node-init.sh.j2", prefix=prefix, run_size=RUN_SIZE, munge_user=MUNGE_USER, pbs=pbs
    )
    write_if_changed(site / INIT_SCRIPT, init, 0o755)
    _home(site / "home", plan.user, client_pubkey)
    make_dir(site / "log")
    make_dir(site / "log" / "munge", 0o755, munge.pw_uid, munge.pw_gid)
    make_dir(site / "slurmctld", 0o700)
    conf = render("slurm.conf.j2", site=plan, hw=hw)
    # The nodes share this machine's /tmp: PMIx's per-step dirs go to each node's own /run.
    mpi_changed = write_if_changed(etc / "slurm" / "mpi.conf", "PMIxCliTmpDirBase=/run/slurmd\n")
    return write_if_changed(etc / "slurm" / "slurm.conf", conf) or mpi_changed


def reset_slurmctld_state(site: Path) -> None:
    """Forget saved nodes and jobs (slurmctld must be stopped): they belong to an old slurm.conf."""
    shutil.rmtree(site / "slurmctld", ignore_errors=True)
    make_dir(site / "slurmctld", 0o700)


def _munge_key(path: Path, munge: pwd.struct_passwd) -> None:
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as key:
        key.write(os.urandom(1024))
    os.chown(path, munge.pw_uid, munge.pw_gid)


def _host_key(path: Path, comment: str) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def host_public_key(site: Path) -> str:
    """`type base64` of the login node's host key, for known_hosts."""
    fields = (site / f"{HOST_KEY}.pub").read_text(encoding="utf-8").split()
    return f"{fields[0]} {fields[1]}"


def _home(homes: Path, user: str, client_pubkey: str) -> None:
    account = pwd.getpwnam(user)
    uid, gid = account.pw_uid, account.pw_gid
    make_dir(homes)
    make_dir(homes / user, 0o755, uid, gid)
    make_dir(homes / user / ".ssh", 0o700, uid, gid)
    keys = homes / user / ".ssh" / "authorized_keys"
    write_if_changed(keys, client_pubkey.strip() + "\n", 0o600)
    os.chown(keys, uid, gid)


def log_file(site: Path, node: str, daemon: str) -> Path:
    """Where a daemon of a node logs, seen from the root namespace."""
    if daemon == "munged":
        return site / "log" / "munge" / f"{node}.log"
    return site / "log" / f"{node}-{daemon}.log"

"""The controller's side of the lab: client key, sites.yaml, ssh_config, known_hosts.

known_hosts pins every login node's host key: nothing here ever turns
StrictHostKeyChecking off.
"""

from pathlib import Path
from typing import Any

import yaml

from pwgen.lab.sitefiles import host_public_key
from pwgen.lab.state import FluxRecord, LabState, SiteRecord
from pwgen.lab.system import run
from pwgen.lab.templating import render, write_if_changed
from pwgen.sites import parse_sites

CLIENT_KEY = "id_ed25519"
SITES_FILE = "sites.yaml"
SSH_CONFIG = "ssh_config"
KNOWN_HOSTS = "known_hosts"
PARTITION = "compute"
PBS_QUEUE = "workq"  # a PBS site's default queue (pwgen.lab.pbs)
FLUX_NODES_PER_BLOCK = 2  # one Flux instance over two compute nodes


def client_key(state_dir: Path) -> Path:
    return state_dir / CLIENT_KEY


def ensure_client_key(state_dir: Path) -> str:
    """The controller's key pair (kept across `up`s); returns the public key."""
    key = client_key(state_dir)
    if not key.exists():
        Path(f"{key}.pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pwgen-lab", "-f", str(key)])
    key.chmod(0o600)
    return Path(f"{key}.pub").read_text(encoding="utf-8")


def controller_files(state_dir: Path) -> list[Path]:
    """Every file of the state dir itself that `up` writes (for `down`)."""
    names = (CLIENT_KEY, f"{CLIENT_KEY}.pub", SITES_FILE, SSH_CONFIG, KNOWN_HOSTS)
    return [state_dir / name for name in names]


def write_controller_files(state: LabState) -> None:
    state_dir = Path(state.state_dir)
    write_if_changed(state_dir / SITES_FILE, sites_yaml(state))
    ssh_config = render(
        "ssh_config.j2",
        sites=state.sites,
        state_dir=state_dir,
        identity_file=client_key(state_dir),
    )
    write_if_changed(state_dir / SSH_CONFIG, ssh_config)
    write_if_changed(state_dir / KNOWN_HOSTS, known_hosts(state.sites))


def site_entry(site: SiteRecord, state_dir: Path) -> dict[str, Any]:
    return {
        "label": site.label,
        "scheduler": site.scheduler,
        "host": site.login_ip,
        "user": site.user,
        "port": 22,
        "identity_file": str(client_key(state_dir)),
        "partition": PBS_QUEUE if site.scheduler == "pbspro" else PARTITION,
    }


def flux_entry(site: SiteRecord, state_dir: Path, flux: FluxRecord) -> dict[str, Any]:
    """A site that uses the machine's Flux build, the way admins provide Flux at a path."""
    return {
        **site_entry(site, state_dir),
        "executor": "flux",
        "nodes_per_block": min(FLUX_NODES_PER_BLOCK, len(site.computes)),
        "flux": {"method": "system", "version": flux.version, "path": flux.prefix},
    }


def sites_yaml(state: LabState) -> str:
    """A sites file for pwgen (`--sites`, `pwgen inventory --from`), checked by its own loader.

    With Flux (`lab up --flux`) the last site is a Flux site; the others stay htex.
    """
    state_dir = Path(state.state_dir)
    entries = [site_entry(site, state_dir) for site in state.sites]
    if state.flux is not None and state.sites:
        entries[-1] = flux_entry(state.sites[-1], state_dir, state.flux)
    data = {"sites": entries}
    text = (
        f"# The pwgen lab in {state_dir} (written by `pwgen lab up`; ssh aliases and\n"
        f"# pinned host keys: {state_dir / SSH_CONFIG}, {state_dir / KNOWN_HOSTS}).\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    parse_sites(text, source=str(state_dir / SITES_FILE))  # never write what pwgen can't read
    return text


def known_hosts(sites: list[SiteRecord]) -> str:
    lines = [f"{site.login_ip} {host_public_key(Path(site.site_dir))}" for site in sites]
    return "".join(f"{line}\n" for line in lines)


def remove_controller_files(state_dir: Path) -> None:
    for path in controller_files(state_dir):
        path.unlink(missing_ok=True)

"""Sites -> an Ansible inventory.

Every site is one host named by its label, in the group `sites` and in one group
per scheduler (`scheduler_slurm`) and per executor kind (`executor_htex`). Host
variables carry the ssh settings (`ansible_*`) and the site settings (`pwgen_*`)
that the roles read. The same two functions feed the YAML file written by
`pwgen inventory` and the `pwgen.hpc.pw` inventory plugin, so both agree.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pwgen.errors import OutputError
from pwgen.fileio import atomic_write
from pwgen.objectstore import AWS_CLI_REQUIREMENT
from pwgen.siteflux import flux_hostvars, with_flux_packages
from pwgen.sites import Site

SITES_GROUP = "sites"
# libyaml's emitter writes the same text as PyYAML's, about 4x faster (1,000 sites).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Site fields that become `pwgen_<field>` host variables as they are.
_SITE_VARS = (
    "scheduler",
    "executor",
    "partition",
    "account",
    "qos",
    "walltime",
    "nodes_per_block",
    "init_blocks",
    "min_blocks",
    "max_blocks",
    "cores_per_worker",
    "max_workers_per_node",
    "workdir",
)


def site_groups(site: Site) -> list[str]:
    """The groups a site's host belongs to."""
    return [SITES_GROUP, f"scheduler_{site.scheduler}", f"executor_{site.executor}"]


def site_hostvars(site: Site) -> dict[str, Any]:
    """Host variables for one site: how to reach it, then what it is."""
    hostvars: dict[str, Any] = _connection_vars(site)
    for name in _SITE_VARS:
        value = getattr(site, name)
        if value is not None:
            hostvars[f"pwgen_{name}"] = value
    hostvars["pwgen_env_method"] = site.env.method
    hostvars["pwgen_env_prefix"] = site.env.prefix
    packages = list(site.env.extra_packages)
    if site.executor == "flux":  # Flux's bindings in the env, and what they import
        hostvars.update(flux_hostvars(site.flux))
        packages = with_flux_packages(packages)
    if site.object_store:  # its tasks' s3:// Files
        packages.append(AWS_CLI_REQUIREMENT)
    hostvars["pwgen_env_extra_packages"] = packages
    if site.env.python:
        hostvars["pwgen_env_python"] = site.env.python
    hostvars["pwgen_worker_init"] = list(site.worker_init)
    return hostvars


def _connection_vars(site: Site) -> dict[str, Any]:
    if site.is_local:
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        }
    hostvars: dict[str, Any] = {"ansible_host": site.host, "ansible_port": site.port}
    if site.user:
        hostvars["ansible_user"] = site.user
    if site.identity_file:
        hostvars["ansible_ssh_private_key_file"] = site.identity_file
    ssh_options = {"ProxyJump": site.proxy_jump} if site.proxy_jump else {}
    ssh_options.update(sorted(site.ssh_options.items()))  # one word each: no quoting
    if ssh_options:
        options = (f"-o {name}={value}" for name, value in ssh_options.items())
        hostvars["ansible_ssh_common_args"] = " ".join(options)
    return hostvars


def build_inventory(sites: Sequence[Site]) -> dict[str, Any]:
    """The inventory as the dict Ansible's YAML inventory format expects."""
    groups: dict[str, dict[str, Any]] = {SITES_GROUP: {"hosts": {}}}
    for site in sites:
        for group in site_groups(site):
            hosts = groups.setdefault(group, {"hosts": {}})["hosts"]
            hosts[site.label] = site_hostvars(site) if group == SITES_GROUP else None
    return {"all": {"children": groups}}


def render_inventory(sites: Sequence[Site], source: str) -> str:
    header = f"# Ansible inventory written by `pwgen inventory` from {source}.\n"
    header += "# It is rewritten on the next run: change the source, not this file.\n"
    body = yaml.dump(
        build_inventory(sites), Dumper=_DUMPER, sort_keys=False, default_flow_style=False
    )
    return header + body


def write_inventory(sites: Sequence[Site], path: Path, source: str) -> None:
    """Write the inventory atomically (the old file stays if anything fails); its
    directory is made if missing (`inventory/` exists only in a checkout)."""
    text = render_inventory(sites, source)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: cannot make directory {path.parent}: {err.strerror}") from err
    atomic_write(path, text)

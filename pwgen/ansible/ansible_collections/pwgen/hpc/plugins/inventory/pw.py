"""Ansible inventory plugin: the clusters of a Parallel Works platform as pwgen sites.

Reads the PW API through `pwgen.sources.pw` (pwgen must be installed in the Python
that runs Ansible) and adds every usable cluster exactly as `pwgen inventory`
writes it (`pwgen.inventory.site_groups` / `site_hostvars`).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: pw
short_description: Parallel Works clusters as pwgen sites
description:
  - Asks the Parallel Works (PW) API for the user's clusters (C(GET /api/clusters), or the
    legacy C(/api/resources) on old platforms) and adds each usable one (status on/active,
    a slurm or pbs scheduler, an address) as a host named by its site label.
  - Hosts, groups (C(sites), C(scheduler_<scheduler>), C(executor_<kind>)) and host variables
    (C(ansible_host), C(ansible_user), C(pwgen_*)) are the same as in the inventory file
    written by C(pwgen inventory --from pw).
  - Clusters that are not usable are listed in a warning.
  - Requires the pwgen Python package in the Python that runs Ansible (it reads the API
    through pwgen's client). Without it, C(pwgen inventory --from pw) writes the same
    inventory as a file.
  - The configuration file must be named C(pw.yml), C(pw.yaml), C(*_pw.yml) or similar
    (its name ends in C(pw.yml) or C(pw.yaml)).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    choices: [pwgen.hpc.pw, pw]
  api_key:
    description:
      - The PW API key (C(pwt_...)). Never printed.
      - Better left to the environment than written into the file.
    type: str
    env:
      - name: PW_API_KEY
  platform_host:
    description:
      - The PW platform host (C(cloud.parallel.works)) or a full C(http(s)://) base URL.
      - If unset, the host is read from the key.
    type: str
    env:
      - name: PW_PLATFORM_HOST
  timeout:
    description: Connect and read timeout of each request, in seconds.
    type: float
    default: 10
"""

EXAMPLES = r"""
# inventory/pw.yml  (ansible-inventory -i inventory/pw.yml --list)
plugin: pwgen.hpc.pw
keyed_groups:
  - key: pwgen_scheduler
    prefix: sched
compose:
  ansible_ssh_private_key_file: "'~/.ssh/pw_id_ed25519'"
groups:
  slurm_sites: pwgen_scheduler == 'slurm'
"""

import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.errors import AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable  # noqa: E402

try:
    from pwgen.errors import PWAPIError
    from pwgen.inventory import site_groups, site_hostvars
    from pwgen.sources.pw import DEFAULT_TIMEOUT, fetch_sites
except ImportError as err:  # reported by parse(), so ansible-doc still works
    PWGEN_IMPORT_ERROR: ImportError | None = err
else:
    PWGEN_IMPORT_ERROR = None


_FILE_ENDINGS = ("pw.yml", "pw.yaml")


class InventoryModule(BaseInventoryPlugin, Constructable):  # type: ignore[misc]
    NAME = "pwgen.hpc.pw"

    def verify_file(self, path: str) -> bool:
        return bool(super().verify_file(path)) and path.endswith(_FILE_ENDINGS)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        if PWGEN_IMPORT_ERROR is not None:
            raise AnsibleParserError(
                "the pwgen.hpc.pw inventory plugin needs the pwgen package in Ansible's"
                f" Python: {PWGEN_IMPORT_ERROR}"
            )
        self._read_config_data(path)

        environ = dict(os.environ)  # the plugin's options (file, then env) win
        for option, variable in (("api_key", "PW_API_KEY"), ("platform_host", "PW_PLATFORM_HOST")):
            value = self.get_option(option)
            if value:
                environ[variable] = str(value)
        timeout = self.get_option("timeout")
        try:
            found = fetch_sites(
                environ, timeout=float(DEFAULT_TIMEOUT if timeout is None else timeout)
            )
        except PWAPIError as err:
            raise AnsibleParserError(str(err)) from None

        if found.skipped:
            listed = "; ".join(str(cluster) for cluster in found.skipped)
            self.display.warning(
                f"pwgen.hpc.pw: skipped {len(found.skipped)} cluster(s) of {found.source}: {listed}"
            )

        strict = self.get_option("strict")
        for site in found.sites:
            host = site.label
            self.inventory.add_host(host)
            for group in site_groups(site):
                self.inventory.add_group(group)
                self.inventory.add_child(group, host)
            for name, value in site_hostvars(site).items():
                self.inventory.set_variable(host, name, value)
            # what compose/groups/keyed_groups see: these vars plus inventory_hostname & co.
            hostvars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(
                self.get_option("groups"), hostvars, host, strict=strict
            )
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"), hostvars, host, strict=strict
            )

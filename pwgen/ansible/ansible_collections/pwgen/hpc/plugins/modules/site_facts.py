#!/usr/bin/python
"""Ansible module: what pwgen's config generator needs to know about a site.

Runs on the site's login node with the system Python and the standard library only. Every
fact comes from structured scheduler output (Slurm `scontrol -o` key=value records, PBS Pro
`-F json`), `ip -o`, /proc, `mpiexec --version` and the pinned env's own Python; nothing on the
site is changed. The parsers live in module_utils (site_facts_scheduler, _network, _sshd, _env,
_flux, _mpi: plain functions that pwgen's tests feed sample output); this file gathers them.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: site_facts
short_description: Gather the facts pwgen needs to write a site's Parsl configuration
version_added: "0.1.0"
description:
  - Reads the scheduler's partitions (Slurm) or queues (PBS Pro) with the CPUs and memory of their
    nodes, the login node's internal IPv4 address that compute nodes reach, the user's home and
    work directories, the platform (architecture, glibc), the pinned environment's Python and
    Parsl versions, the paths of C(process_worker_pool.py) and C(pwgen-relay) in it and of the
    C(pwgen_worker) module it imports, the Flux it imports, and whether sshd allows C(GatewayPorts).
  - Returns everything under the C(pwgen_site_facts) key (not as C(ansible_facts)), so callers
    do not depend on a fact cache.
  - Read-only; runs unchanged in check mode.
options:
  scheduler:
    description: The site's batch scheduler.
    type: str
    required: true
    choices: [slurm, pbspro]
  env_path:
    description:
      - Directory of the pinned Parsl environment (a venv or conda prefix), for example the
        C(parsl_env_path) fact of the pwgen.hpc.parsl_env role. C(~) is expanded.
      - When empty, C(python), C(parsl_version), C(worker_pool), C(relay) and C(worker_helpers)
        are null.
      - A missing environment is not an error (check mode may not have created it yet); the
        fields are null and C(warnings) says why.
    type: str
    default: ""
  workdir:
    description: The site's pwgen work directory; C(~) and C($HOME) are expanded. Not created.
    type: str
    default: "~/.pwgen/work"
  expect_parsl_version:
    description:
      - When set, fail unless the env's Python finds Parsl at this version (the installed
        package's metadata), naming the fix. Not checked in check mode while the env does
        not exist yet.
    type: str
    default: ""
  expect_python_version:
    description:
      - When set, fail unless the env's Python is this major.minor (for example V(3.11)).
        Not checked in check mode while the env does not exist yet.
    type: str
    default: ""
  search_path:
    description:
      - Directories searched for the scheduler's commands after C(PATH). Non-login SSH sessions
        often lack the directories that C(/etc/profile.d) adds.
    type: list
    elements: str
    default: [/opt/slurm/bin, /opt/pbs/bin, /usr/local/bin]
attributes:
  check_mode:
    description: Can run in check mode and return the facts it would.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
notes:
  - Per-partition C(cpus_per_node) and C(memory_mb_per_node) are the smallest over the partition's
    nodes, so a block sized with them fits on any node of the partition.
  - PBS Pro is parsed from the documented C(qstat -Qf -F json), C(qstat -Bf -F json) and
    C(pbsnodes -a -F json) shapes. A vnode belongs to a queue through its C(queue) attribute or a
    C(resources_available.Qlist) entry; a vnode with neither serves every execution queue whose
    C(hasnodes) is not true. Route queues get the nodes of their destinations.
author:
  - pwgen contributors (@pwgen)
"""

EXAMPLES = r"""
- name: Gather the site facts
  pwgen.hpc.site_facts:
    scheduler: slurm
    env_path: "{{ parsl_env_path }}"
  register: __site_facts_result

- name: Show the login node's internal address
  ansible.builtin.debug:
    msg: "{{ __site_facts_result.pwgen_site_facts.internal_address }}"
"""

RETURN = r"""
pwgen_site_facts:
  description: The site facts (pwgen/facts.py SiteFacts mirrors this shape).
  returned: success
  type: dict
  contains:
    version:
      description: Version of this result's shape; bumped only for incompatible changes.
      type: int
      sample: 1
    scheduler:
      description: The scheduler the facts were read from.
      type: str
      sample: slurm
    scheduler_version:
      description: The scheduler's version as its tools report it, or null.
      type: str
      sample: "22.05.8"
    scheduler_bin_dir:
      description: Directory holding the scheduler's commands (sinfo, qstat).
      type: str
      sample: /usr/bin
    partitions:
      description: Slurm partitions or PBS queues visible to the user.
      type: list
      elements: dict
      contains:
        name: {description: Partition or queue name, type: str}
        state: {description: "up, down, drain or inactive", type: str}
        nodes: {description: Number of nodes, type: int}
        cpus_per_node: {description: "Smallest usable CPU count of its nodes, or null", type: int}
        memory_mb_per_node: {description: "Smallest memory of its nodes in MiB, or null", type: int}
        default: {description: Whether jobs go here when none is named, type: bool}
        max_time: {description: "Longest walltime as [D-]HH:MM:SS, null when unlimited", type: str}
        max_time_seconds: {description: "max_time in seconds, null when unlimited", type: int}
      sample:
        - {name: compute, state: up, nodes: 2, cpus_per_node: 2, memory_mb_per_node: 22899,
           default: true, max_time: null, max_time_seconds: null}
    internal_address:
      description: The login node's IPv4 address that compute nodes reach, or null.
      type: str
      sample: 10.242.1.1
    internal_address_method:
      description: >-
        How it was found: C(subnet) (a local interface in the compute nodes' subnet),
        C(route) (source address of the route to a compute node), C(primary) (the first global
        address), or null.
      type: str
      sample: subnet
    internal_interface:
      description: The interface holding internal_address, when known.
      type: str
      sample: br0
    hostname: {description: Login node host name, type: str}
    home: {description: The user's home directory, type: str}
    workdir: {description: "pwgen's work directory (expanded; may not exist yet)", type: str}
    arch: {description: Machine architecture, type: str, sample: x86_64}
    glibc: {description: glibc version or null, type: str, sample: "2.36"}
    env_path: {description: "The expanded env_path, or null", type: str}
    python:
      description: The env's interpreter, or null.
      type: dict
      contains:
        path: {description: Interpreter path, type: str}
        version: {description: Full version, type: str, sample: "3.11.2"}
    parsl_version: {description: "Parsl version installed in the env, or null", type: str}
    worker_pool: {description: "Path of process_worker_pool.py in the env, or null", type: str}
    relay: {description: "Path of pwgen-relay in the env, or null", type: str}
    worker_helpers:
      description: Path of the pwgen_worker module the env's Python imports, or null.
      type: str
    flux:
      description: "The Flux whose bindings the env's Python finds (pwgen.hpc.flux), or null."
      type: dict
      contains:
        version: {description: "What C(<prefix>/bin/flux version) reports, or null", type: str}
        prefix: {description: "Flux's prefix (above the bindings' lib/), or null", type: str}
        command: {description: "C(<prefix>/bin/flux), or null when missing", type: str}
        bindings: {description: The site-packages directory the env imports C(flux) from, type: str}
        mpi_default: {description: "Slurm's MpiDefault (scontrol show config), or null", type: str}
        srun_args: {description: "srun's arguments to start Flux over a block's nodes:
            V([--mpi=pmi2]) unless MpiDefault is pmi2; null off Slurm", type: list, elements: str}
    mpi:
      description: "The C(mpiexec) first on PATH (after the site's ~/.bashrc), or null when none."
      type: dict
      contains:
        mpiexec: {description: Its path as PATH finds it, type: str}
        flavor: {description: "mpich, intel, openmpi, cray or unknown (its --version)", type: str}
        version: {description: "The first line of its --version with a digit, or null", type: str}
    gateway_ports:
      description: Whether the sshd serving this session lets remote forwards bind non-loopback.
      type: dict
      contains:
        allowed: {description: "true, false or the string unknown", type: raw}
        setting: {description: "GatewayPorts: no, yes, clientspecified or null", type: str}
        method: {description: "sshd -T, command line, sshd_config, or null", type: str}
        source: {description: "The config file read, or null", type: str}
        reason: {description: "Why the answer is unknown or may be inexact, or null", type: str}
    warnings:
      description: Facts that could not be determined, and why.
      type: list
      elements: str
"""

import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.pwgen.hpc.plugins.module_utils import site_facts_mpi  # noqa: E402
from ansible_collections.pwgen.hpc.plugins.module_utils.site_facts_env import (  # noqa: E402
    env_facts,
    env_mismatch,
    expand,
    glibc_version,
)
from ansible_collections.pwgen.hpc.plugins.module_utils.site_facts_flux import (  # noqa: E402
    flux_facts,
)
from ansible_collections.pwgen.hpc.plugins.module_utils.site_facts_network import (  # noqa: E402
    parse_ip_addr,
    parse_route_src,
    pick_internal_address,
    resolve_ipv4,
    udp_route_src,
)
from ansible_collections.pwgen.hpc.plugins.module_utils.site_facts_scheduler import (  # noqa: E402
    parse_scontrol_records,
    pbs_node_hosts,
    pbs_partitions,
    slurm_node_addresses,
    slurm_partitions,
)
from ansible_collections.pwgen.hpc.plugins.module_utils.site_facts_sshd import (  # noqa: E402
    gateway_ports,
    listener_cmdline,
)

FACTS_VERSION = 1


class _Gatherer:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.warnings: list[str] = []
        self.bin_dir: str | None = None
        self.scontrol: str | None = None  # Slurm's, for the Flux facts

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        return rc, out, err

    def must(self, argv: list[str]) -> str:
        rc, out, err = self.run(argv)
        if rc != 0:
            detail = " ".join((err or out).split())[-500:]
            self.module.fail_json(msg=f"{' '.join(argv)} failed (exit {rc}): {detail}")
        return out

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def command(self, name: str) -> str:
        found = self.module.get_bin_path(name, opt_dirs=self.module.params["search_path"])
        if not found:
            dirs = ", ".join(self.module.params["search_path"])
            scheduler = self.module.params["scheduler"]
            self.module.fail_json(
                msg=f"{name} not found on the site (searched PATH and {dirs}): is this a "
                f"{scheduler} login node? Add the directory holding it to search_path "
                "(site_facts_search_path)."
            )
        self.bin_dir = self.bin_dir or os.path.dirname(found)
        return str(found)

    def json_of(self, argv: list[str], required: bool) -> dict[str, Any] | None:
        rc, out, err = self.run(argv)
        if rc == 0:
            try:
                data = json.loads(out)
            except ValueError as exc:
                detail = f"invalid JSON ({exc})"
            else:
                if isinstance(data, dict):
                    return data
                detail = "JSON is not an object"
        else:
            detail = " ".join((err or out).split())[-300:] or f"exit {rc}"
        if required:
            self.module.fail_json(msg=f"{' '.join(argv)} failed: {detail}")
        self.warn(f"{' '.join(argv)} failed: {detail}")
        return None

    def scheduler(self) -> tuple[list[dict[str, Any]], list[str], str | None]:
        """(partitions, compute node addresses, scheduler version)."""
        if self.module.params["scheduler"] == "slurm":
            self.command("sinfo")
            scontrol = self.scontrol = self.command("scontrol")
            partitions = parse_scontrol_records(self.must([scontrol, "show", "partition", "-o"]))
            nodes = parse_scontrol_records(self.must([scontrol, "show", "node", "-o"]))
            rc, out, _err = self.run([scontrol, "--version"])
            version = out.split()[-1] if rc == 0 and out.split() else None
            return slurm_partitions(partitions, nodes), slurm_node_addresses(nodes), version
        qstat = self.command("qstat")
        queues = self.json_of([qstat, "-Qf", "-F", "json"], required=True) or {}
        server = self.json_of([qstat, "-Bf", "-F", "json"], required=False)
        pbsnodes = self.module.get_bin_path("pbsnodes", opt_dirs=self.module.params["search_path"])
        vnodes = None
        if pbsnodes:
            vnodes = self.json_of([pbsnodes, "-a", "-F", "json"], required=False)
        else:
            self.warn("pbsnodes not found: queue node counts, CPUs and memory are unknown")
        pbs_version = queues.get("pbs_version")
        return pbs_partitions(queues, vnodes, server), pbs_node_hosts(vnodes), pbs_version

    def addresses(self, compute_names: list[str]) -> dict[str, Any]:
        ip = self.module.get_bin_path("ip", opt_dirs=["/sbin", "/usr/sbin"])
        interfaces: list[tuple[str, ipaddress.IPv4Interface]] = []
        if ip:
            interfaces = parse_ip_addr(self.must([ip, "-4", "-o", "addr", "show"]))
        else:
            self.warn("`ip` not found: the subnet method is skipped")

        def route_src(address: ipaddress.IPv4Address) -> str | None:
            rc, out, _e = self.run([ip, "-4", "route", "get", str(address)]) if ip else (1, "", "")
            src: str | None = parse_route_src(out) if rc == 0 else udp_route_src(address)
            return src

        computes = resolve_ipv4(compute_names)
        if not computes:
            self.warn("no compute node address could be resolved")
        address, method, interface = pick_internal_address(interfaces, computes, route_src)
        if address is None:
            self.warn("no internal IPv4 address found")
        return {
            "internal_address": address,
            "internal_address_method": method,
            "internal_interface": interface,
        }

    def gather(self) -> dict[str, Any]:
        params = self.module.params
        env_path = expand(params["env_path"])
        partitions, compute_names, version = self.scheduler()
        facts: dict[str, Any] = {
            "version": FACTS_VERSION,
            "scheduler": params["scheduler"],
            "scheduler_version": version,
            "scheduler_bin_dir": self.bin_dir,
            "partitions": partitions,
        }
        facts.update(self.addresses(compute_names))
        facts.update(
            {
                "hostname": socket.gethostname(),
                "home": os.path.expanduser("~"),
                "workdir": expand(params["workdir"]),
                "arch": platform.machine(),
                "glibc": glibc_version(),
                "env_path": env_path or None,
            }
        )
        probed: dict[str, Any] = {}
        env = env_facts(self.run, env_path, self.warn, probed)
        mismatch = env_mismatch(
            env, env_path, params["expect_parsl_version"], params["expect_python_version"]
        )
        # In check mode the env role may only have pretended to create the env.
        if mismatch and not (self.module.check_mode and env["python"] is None):
            detail = [w for w in self.warnings if "finds no parsl" in w][-1:]
            self.module.fail_json(msg=" ".join([mismatch, *detail]))
        facts.update(env)
        facts["flux"] = flux_facts(self.run, probed.get("flux"), self.scontrol, self.warn)
        facts["mpi"] = site_facts_mpi.mpi_facts(self.warn)
        facts["gateway_ports"] = gateway_ports(self.run, *listener_cmdline())
        facts["warnings"] = self.warnings
        return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "scheduler": {"type": "str", "required": True, "choices": ["slurm", "pbspro"]},
            "env_path": {"type": "str", "default": ""},
            "workdir": {"type": "str", "default": "~/.pwgen/work"},
            "expect_parsl_version": {"type": "str", "default": ""},
            "expect_python_version": {"type": "str", "default": ""},
            "search_path": {
                "type": "list",
                "elements": "str",
                "default": ["/opt/slurm/bin", "/opt/pbs/bin", "/usr/local/bin"],
            },
        },
        supports_check_mode=True,
    )
    facts = _Gatherer(module).gather()
    module.exit_json(changed=False, pwgen_site_facts=facts)


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Ansible module: what pwgen's config generator needs to know about a site.

Runs on the site's login node with the system Python and the standard library
only. Every fact comes from structured scheduler output (Slurm `scontrol -o`
key=value records, PBS Pro `-F json`), `ip -o`, /proc and the pinned env's own
Python; nothing on the site is changed. The parsers are plain functions so the
controller's tests can import this file and feed them sample output.
"""

import glob
import ipaddress
import json
import os
import platform
import re
import shlex
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule

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
    C(pwgen_worker) module it imports, and whether the site's sshd allows C(GatewayPorts).
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
    support: full
  diff_mode:
    support: none
notes:
  - Per-partition C(cpus_per_node) and C(memory_mb_per_node) are the smallest over the partition's
    nodes, so a block sized with them fits on any node of the partition.
  - PBS Pro is parsed from the documented C(qstat -Qf -F json), C(qstat -Bf -F json) and
    C(pbsnodes -a -F json) shapes. A vnode belongs to a queue through its C(queue) attribute or a
    C(resources_available.Qlist) entry; a vnode with neither serves every execution queue whose
    C(hasnodes) is not true. Route queues get the nodes of their destinations.
author:
  - pwgen
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
        cpus_per_node: {description: Smallest usable CPU count of its nodes, or null, type: int}
        memory_mb_per_node: {description: Smallest memory of its nodes in MiB, or null, type: int}
        default: {description: Whether jobs go here when none is named, type: bool}
        max_time: {description: "Longest walltime as [D-]HH:MM:SS, null when unlimited", type: str}
        max_time_seconds: {description: max_time in seconds, null when unlimited, type: int}
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
    env_path: {description: The expanded env_path, or null, type: str}
    python:
      description: The env's interpreter, or null.
      type: dict
      contains:
        path: {description: Interpreter path, type: str}
        version: {description: Full version, type: str, sample: "3.11.2"}
    parsl_version: {description: the version of the Parsl installed in the env, or null, type: str}
    worker_pool: {description: Path of process_worker_pool.py in the env, or null, type: str}
    relay: {description: Path of pwgen-relay in the env, or null, type: str}
    worker_helpers:
      description: Path of the pwgen_worker module the env's Python imports, or null.
      type: str
    gateway_ports:
      description: Whether the sshd serving this session lets remote forwards bind non-loopback.
      type: dict
      contains:
        allowed: {description: "true, false or the string unknown", type: raw}
        setting: {description: "GatewayPorts: no, yes, clientspecified or null", type: str}
        method: {description: "sshd -T, command line, sshd_config, or null", type: str}
        source: {description: The config file read, or null, type: str}
        reason: {description: Why the answer is unknown or may be inexact, or null, type: str}
    warnings:
      description: Facts that could not be determined, and why.
      type: list
      elements: str
"""

FACTS_VERSION = 1
# Runs inside the env's Python: its version, the installed Parsl's (from its package
# metadata, and the package found on sys.path) and where pwgen_worker is, as one JSON
# line. Importing Parsl costs half a second of CPU per site on every provision; a new env
# is import-checked by pwgen.hpc.parsl_env, and `pwgen run` imports Parsl live (preflight).
# Without the current directory on sys.path (`-c` puts it first), like a worker.
_PYTHON_PROBE = (
    "import importlib.metadata, importlib.util, json, platform, sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "info = {'version': platform.python_version(), 'parsl': None, 'error': None}\n"
    "try:\n"
    "    if importlib.util.find_spec('parsl') is None:\n"
    "        raise ImportError('no parsl package on sys.path')\n"
    "    info['parsl'] = importlib.metadata.version('parsl')\n"
    "except Exception as err:\n"
    "    info['error'] = f'{type(err).__name__}: {err}'\n"
    "spec = importlib.util.find_spec('pwgen_worker')\n"
    "info['worker_helpers'] = spec.origin if spec else None\n"
    "print(json.dumps(info))\n"
)
_ENV_FACTS = ("python", "parsl_version", "worker_pool", "relay", "worker_helpers")
_SSHD_CONFIG = "/etc/ssh/sshd_config"
_SSHD_PROGRAMS = ("sshd", "sshd-session", "sshd-auth")

Runner = Callable[[list[str]], tuple[int, str, str]]


# ------------------------------------------------------------------ time and sizes


def format_walltime(seconds: int | None) -> str | None:
    """Seconds -> HH:MM:SS, or D-HH:MM:SS from one day on; None stays None (unlimited)."""
    if seconds is None:
        return None
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def parse_walltime(text: str | None) -> int | None:
    """Slurm/PBS time limits ([D-]HH:MM:SS, MM:SS, minutes) -> seconds; None if unlimited."""
    if text is None:
        return None
    text = str(text).strip()
    if text.upper() in ("", "UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [int(part) for part in text.split(":")]
    if len(parts) == 1:  # Slurm: a bare number is minutes (PBS: seconds, but PBS uses H:M:S)
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    elif len(parts) == 3:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        raise ValueError(f"not a time limit: {text!r}")
    return days * 86400 + seconds


_PBS_SIZE = re.compile(r"^(\d+)\s*([kmgtp]?)(b|w)?$", re.IGNORECASE)


def pbs_size_to_mb(text: Any) -> int | None:
    """A PBS size (`2033640kb`, `16gb`, `512mb`, `8w`, plain bytes) -> MiB, rounded down."""
    if text is None:
        return None
    match = _PBS_SIZE.match(str(text).strip())
    if not match:
        return None
    number, scale, unit = match.groups()
    size: int = int(number) << (10 * "bkmgtp".index((scale or "b").lower()))
    if (unit or "b").lower() == "w":  # words: 8 bytes on every 64-bit system
        size *= 8
    return size // 1024**2


# ------------------------------------------------------------------ Slurm


_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_:/.]*)=(.*)$")


def parse_scontrol_records(text: str) -> list[dict[str, str]]:
    """`scontrol show <thing> -o` output -> one dict per line.

    Values may contain spaces (`OS=Linux 6.1 #1 SMP`, `Reason=...`): a token
    without `Key=` continues the previous value.
    """
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        key = None
        for token in line.split():
            match = _KEY.match(token)
            if match:
                key = match.group(1)
                record[key] = match.group(2)
            elif key is not None:
                record[key] += " " + token
        if record:
            records.append(record)
    return records


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _smallest(values: Iterable[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return min(known) if known else None


def slurm_partitions(
    partition_records: Sequence[dict[str, str]], node_records: Sequence[dict[str, str]]
) -> list[dict[str, Any]]:
    """Partitions from `scontrol show partition -o` and `scontrol show node -o` records."""
    members: dict[str, list[dict[str, str]]] = {}
    for node in node_records:
        for name in node.get("Partitions", "").split(","):
            if name:
                members.setdefault(name, []).append(node)
    partitions = []
    for record in partition_records:
        name = record["PartitionName"]
        nodes = members.get(name, [])
        max_time = parse_walltime(record.get("MaxTime"))
        total = _int_or_none(record.get("TotalNodes"))
        partitions.append(
            {
                "name": name,
                "state": record.get("State", "UNKNOWN").lower(),
                "nodes": total if total is not None else len(nodes),
                # CPUEfctv (22.05+) leaves out cores reserved for the system.
                "cpus_per_node": _smallest(
                    _int_or_none(node.get("CPUEfctv", node.get("CPUTot"))) for node in nodes
                ),
                "memory_mb_per_node": _smallest(
                    _int_or_none(node.get("RealMemory")) for node in nodes
                ),
                "default": record.get("Default", "NO").upper() == "YES",
                "max_time": format_walltime(max_time),
                "max_time_seconds": max_time,
            }
        )
    return partitions


def slurm_node_addresses(node_records: Sequence[dict[str, str]]) -> list[str]:
    """NodeAddr of every node (the address slurmctld uses; may be a host name)."""
    return [node.get("NodeAddr") or node["NodeName"] for node in node_records if "NodeName" in node]


# ------------------------------------------------------------------ PBS Pro


def _pbs_true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "t", "y")


def _queues_of_node(node: dict[str, Any]) -> set[str] | None:
    """Queues a vnode is tied to, or None when it is not tied to any."""
    queues = set()
    if node.get("queue"):
        queues.add(str(node["queue"]))
    qlist = (node.get("resources_available") or {}).get("Qlist")
    if qlist:
        queues.update(part.strip() for part in str(qlist).split(",") if part.strip())
    return queues or None


def pbs_partitions(
    queue_json: dict[str, Any],
    nodes_json: dict[str, Any] | None,
    server_json: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Queues from `qstat -Qf -F json`, their vnodes from `pbsnodes -a -F json`, and the
    default queue from `qstat -Bf -F json` (the last two may be None when not readable)."""
    queues: dict[str, dict[str, Any]] = queue_json.get("Queue") or {}
    default_queue = None
    for server in ((server_json or {}).get("Server") or {}).values():
        default_queue = server.get("default_queue") or default_queue
    vnodes = list(((nodes_json or {}).get("nodes") or {}).values())

    def direct_nodes(name: str) -> list[dict[str, Any]]:
        queue = queues[name]
        if str(queue.get("queue_type", "")).lower() != "execution":
            return []
        found = []
        for node in vnodes:
            tied = _queues_of_node(node)
            if (tied is not None and name in tied) or (
                tied is None and not _pbs_true(queue.get("hasnodes", "False"))
            ):
                found.append(node)
        return found

    def nodes_of(name: str, seen: frozenset[str]) -> list[dict[str, Any]]:
        queue = queues.get(name)
        if queue is None or name in seen:
            return []
        if str(queue.get("queue_type", "")).lower() == "route":
            found: dict[int, dict[str, Any]] = {}
            for target in str(queue.get("route_destinations", "")).split(","):
                target = target.strip().split("@")[0]
                for node in nodes_of(target, seen | {name}):
                    found[id(node)] = node
            return list(found.values())
        return direct_nodes(name)

    partitions = []
    for name, queue in queues.items():
        enabled = _pbs_true(queue.get("enabled", "False"))
        started = _pbs_true(queue.get("started", "False"))
        state = "down" if not enabled else "up" if started else "inactive"
        members = nodes_of(name, frozenset()) if nodes_json is not None else None
        max_time = parse_walltime((queue.get("resources_max") or {}).get("walltime"))
        available = [(node.get("resources_available") or {}) for node in members or []]
        partitions.append(
            {
                "name": name,
                "state": state,
                "nodes": len(members) if members is not None else None,
                "cpus_per_node": _smallest(_int_or_none(res.get("ncpus")) for res in available),
                "memory_mb_per_node": _smallest(
                    pbs_size_to_mb(res.get("mem")) for res in available
                ),
                "default": name == default_queue,
                "max_time": format_walltime(max_time),
                "max_time_seconds": max_time,
            }
        )
    return partitions


def pbs_node_hosts(nodes_json: dict[str, Any] | None) -> list[str]:
    """Host names of the PBS vnodes (their MoM or resources_available.host)."""
    hosts = []
    for name, node in ((nodes_json or {}).get("nodes") or {}).items():
        host = node.get("Mom") or (node.get("resources_available") or {}).get("host") or name
        if host not in hosts:
            hosts.append(str(host))
    return hosts


# ------------------------------------------------------------------ addresses


def parse_ip_addr(text: str) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """`ip -4 -o addr show` -> [(interface, address/prefix)], loopback left out."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", line)
        if not match:
            continue
        interface = ipaddress.IPv4Interface(match.group(2))
        if not interface.ip.is_loopback:
            found.append((match.group(1).split("@")[0], interface))
    return found


def parse_route_src(text: str) -> str | None:
    """The `src` of `ip route get <addr>` output."""
    match = re.search(r"\bsrc\s+(\d+\.\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None


def resolve_ipv4(names: Iterable[str]) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses of node addresses that may be host names (unresolvable ones skipped)."""
    addresses: list[ipaddress.IPv4Address] = []
    for name in names:
        try:
            found = [ipaddress.IPv4Address(name)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
            except OSError:
                continue
            found = [ipaddress.IPv4Address(info[4][0]) for info in infos]
        addresses.extend(address for address in found if address not in addresses)
    return addresses


def pick_internal_address(
    interfaces: Sequence[tuple[str, ipaddress.IPv4Interface]],
    computes: Sequence[ipaddress.IPv4Address],
    route_src: Callable[[ipaddress.IPv4Address], str | None],
) -> tuple[str | None, str | None, str | None]:
    """(address, method, interface): the local address that compute nodes reach.

    1. `subnet`: the local interface whose network holds the most compute nodes;
    2. `route`: the source address of the route to a compute node;
    3. `primary`: the first global address of the login node.
    """
    by_interface: dict[tuple[str, str], int] = {}
    for name, interface in interfaces:
        count = sum(1 for address in computes if address in interface.network)
        if count:
            by_interface[(name, str(interface.ip))] = count
    if by_interface:
        # max() keeps the first of equals: `ip addr` order breaks ties.
        (name, address), _ = max(by_interface.items(), key=lambda item: item[1])
        return address, "subnet", name
    for compute in computes:
        src = route_src(compute)
        if src and not ipaddress.IPv4Address(src).is_loopback:
            return src, "route", _interface_of(src, interfaces)
    if interfaces:
        name, interface = interfaces[0]
        return str(interface.ip), "primary", name
    return None, None, None


def _interface_of(
    address: str, interfaces: Sequence[tuple[str, ipaddress.IPv4Interface]]
) -> str | None:
    for name, interface in interfaces:
        if str(interface.ip) == address:
            return name
    return None


def udp_route_src(address: ipaddress.IPv4Address) -> str | None:
    """Source address the kernel would use towards `address` (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((str(address), 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


# ------------------------------------------------------------------ sshd GatewayPorts


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()
    return comm, int(fields[1])


def serving_sshd_pid(start: int) -> int | None:
    """The listening sshd this session descends from: the topmost sshd ancestor."""
    found = None
    pid = start
    for _ in range(64):
        stat = _proc_stat(pid)
        if stat is None:
            break
        comm, parent = stat
        if comm in _SSHD_PROGRAMS:
            found = pid
        elif found is not None:
            break
        if parent <= 1:
            break
        pid = parent
    return found


def parse_sshd_argv(cmdline: bytes) -> tuple[str | None, str | None, dict[str, str]]:
    """(program, -f config, -o options) from a listener's /proc cmdline.

    sshd rewrites its title (`sshd: /usr/sbin/sshd -f /etc/x [listener] ...`), so
    split on NULs and spaces alike.
    """
    tokens = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").split()
    if tokens and tokens[0] == "sshd:":
        tokens = tokens[1:]
    program = tokens[0] if tokens and tokens[0].startswith("/") else None
    config = None
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("-f", "-o") and index + 1 < len(tokens):
            value, index = tokens[index + 1], index + 1
        elif token.startswith(("-f", "-o")) and len(token) > 2:
            value = token[2:]
        else:
            index += 1
            continue
        if token.startswith("-f"):
            config = value
        else:
            key, _, rest = value.replace("=", " ", 1).partition(" ")
            if not rest and index + 1 < len(tokens):  # `-o GatewayPorts yes` split by us
                rest, index = tokens[index + 1], index + 1
            options.setdefault(key.lower(), rest.strip())
        index += 1
    return program, config, options


def _config_lines(path: str, depth: int = 0) -> Iterator[tuple[str, list[str]]]:
    """(keyword, arguments) of an sshd_config, Include files expanded in place."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split("#", 1)[0].split()
        if not words:
            continue
        keyword, *args = words
        if "=" in keyword:  # `Keyword=value`
            keyword, _, first = keyword.partition("=")
            args = [first, *args] if first else args
        elif args and args[0].startswith("="):
            args = [args[0][1:], *args[1:]] if args[0] != "=" else args[1:]
        if keyword.lower() == "include" and depth < 16:
            for pattern in args:
                if not os.path.isabs(pattern):
                    pattern = os.path.join("/etc/ssh", pattern)
                for included in sorted(glob.glob(pattern)):
                    yield from _config_lines(included, depth + 1)
            continue
        yield keyword.lower(), args


def gateway_ports_from_config(path: str) -> tuple[str, str | None]:
    """(setting, note) from an sshd_config: the first global GatewayPorts wins, as in sshd.

    Raises OSError when the file (or an included one) cannot be read.
    """
    setting = None
    in_match = False
    matched_elsewhere = False
    for keyword, args in _config_lines(path):
        if keyword == "match":
            in_match = [arg.lower() for arg in args] != ["all"]
        elif keyword == "gatewayports" and args:
            if in_match:
                matched_elsewhere = True
            elif setting is None:
                setting = args[0].lower()
    note = None
    if matched_elsewhere:
        note = "a Match block also sets GatewayPorts; the global value is reported"
    if setting is None:
        return "no", note  # sshd's built-in default
    return setting, note


def parse_sshd_t(text: str) -> str | None:
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key.lower() == "gatewayports":
            return value.strip().lower()
    return None


def listener_cmdline() -> tuple[bytes | None, str | None]:
    """(command line of the sshd serving this session, or None; why it is None)."""
    pid = serving_sshd_pid(os.getpid())
    if pid is None:
        return None, "no sshd among this process's ancestors"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read(), None
    except OSError as err:
        return None, f"cannot read sshd's command line: {err.strerror}"


def gateway_ports(run: Runner, cmdline: bytes | None, note: str | None = None) -> dict[str, Any]:
    """Whether the sshd serving this session allows GatewayPorts, and how we know.

    `cmdline` is that sshd's /proc cmdline (None: unknown, `note` says why; then
    /etc/ssh/sshd_config is assumed). Order: `-o GatewayPorts` on its command line,
    `sshd -T` (needs root on most systems: host keys), then its config file.
    """
    program = config = None
    options: dict[str, str] = {}
    notes = [note] if note else []
    if cmdline is not None:
        program, config, options = parse_sshd_argv(cmdline)
    config = config or _SSHD_CONFIG
    program = program or shutil.which("sshd") or "/usr/sbin/sshd"

    def answer(setting: str, method: str, extra: str | None = None) -> dict[str, Any]:
        allowed: bool | str = setting in ("yes", "clientspecified")
        if setting not in ("yes", "clientspecified", "no"):
            allowed = "unknown"
        return {
            "allowed": allowed,
            "setting": setting,
            "method": method,
            "source": config,
            "reason": "; ".join([*notes, *([extra] if extra else [])]) or None,
        }

    if "gatewayports" in options:  # -o on sshd's command line beats the config file
        return answer(options["gatewayports"].lower(), "command line")

    if os.access(program, os.X_OK):
        argv = [program, "-T", "-f", config]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        rc, out, stderr = run(argv)
        setting = parse_sshd_t(out) if rc == 0 else None
        if setting:
            return answer(setting, "sshd -T")
        lines = (stderr or out).strip().splitlines()
        notes.append(f"sshd -T failed: {lines[-1] if lines else f'exit {rc}'}")
    try:
        setting, match_note = gateway_ports_from_config(config)
    except OSError as err:
        notes.append(f"cannot read {err.filename or config}: {err.strerror}")
        return {
            "allowed": "unknown",
            "setting": None,
            "method": None,
            "source": config,
            "reason": "; ".join(notes),
        }
    return answer(setting, "sshd_config", match_note)


# ------------------------------------------------------------------ the env


def env_facts(run: Runner, env_path: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """python, parsl_version, worker_pool, relay and worker_helpers of the pinned env (None
    when unknown)."""
    facts: dict[str, Any] = dict.fromkeys(_ENV_FACTS)
    if not env_path:
        return facts
    bin_dir = os.path.join(env_path, "bin")
    python = os.path.join(bin_dir, "python")
    if not os.access(python, os.X_OK):
        warn(f"env {env_path}: no {python} (not provisioned yet?)")
        return facts
    rc, out, err = run([python, "-c", _PYTHON_PROBE])
    try:
        info = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        warn(f"{python} failed (exit {rc}): {' '.join(err.split())[-300:]}")
        return facts
    facts["python"] = {"path": python, "version": info["version"]}
    facts["parsl_version"] = info["parsl"]
    facts["worker_helpers"] = info.get("worker_helpers")
    if info["error"]:
        warn(f"{python} finds no parsl: {info['error']}")
    for key, name in (("worker_pool", "process_worker_pool.py"), ("relay", "pwgen-relay")):
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            facts[key] = path
        elif key == "worker_pool":
            warn(f"env {env_path}: no executable {path}")
    return facts


def env_mismatch(
    facts: dict[str, Any], env_path: str, expect_parsl: str, expect_python: str
) -> str | None:
    """Why the env does not run the expected Parsl and Python major.minor (None if it does).

    `facts` are env_facts' result for `env_path`; an empty expectation is not checked.
    """
    if not (expect_parsl or expect_python):
        return None
    python = facts["python"]
    if python is None:
        found = f"{env_path}/bin/python does not run"
    elif facts["parsl_version"] is None:
        found = f"{python['path']} finds no parsl"
    else:
        major_minor = ".".join(python["version"].split(".")[:2])
        if expect_parsl in ("", facts["parsl_version"]) and expect_python in ("", major_minor):
            return None
        found = f"{python['path']} reports Parsl {facts['parsl_version']} on Python {major_minor}"
    wanted = " on ".join(
        part
        for part in (
            f"Parsl {expect_parsl}" if expect_parsl else "",
            f"Python {expect_python}" if expect_python else "",
        )
        if part
    )
    return (
        f"{found}, but the env must run {wanted} (the pinned lock). Remove the env "
        f"(pwgen.hpc.purge with parsl_env_purge_hashes=[{os.path.basename(env_path)}]) "
        "and provision again."
    )


def glibc_version() -> str | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        text = ""
    if text.startswith("glibc "):
        return text.split()[1]
    lib, version = platform.libc_ver()
    return version if lib == "glibc" and version else None


def expand(path: str) -> str:
    return os.path.normpath(os.path.expandvars(os.path.expanduser(path))) if path else ""


# ------------------------------------------------------------------ the module


class _Gatherer:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.warnings: list[str] = []
        self.bin_dir: str | None = None

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
            scontrol = self.command("scontrol")
            partitions = parse_scontrol_records(self.must([scontrol, "show", "partition", "-o"]))
            nodes = parse_scontrol_records(self.must([scontrol, "show", "node", "-o"]))
            rc, out, _ = self.run([scontrol, "--version"])
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
            if ip:
                rc, out, _ = self.run([ip, "-4", "route", "get", str(address)])
                if rc == 0:
                    return parse_route_src(out)
            return udp_route_src(address)

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
        env = env_facts(self.run, env_path, self.warn)
        mismatch = env_mismatch(
            env, env_path, params["expect_parsl_version"], params["expect_python_version"]
        )
        # In check mode the env role may only have pretended to create the env.
        if mismatch and not (self.module.check_mode and env["python"] is None):
            detail = [w for w in self.warnings if "finds no parsl" in w][-1:]
            self.module.fail_json(msg=" ".join([mismatch, *detail]))
        facts.update(env)
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

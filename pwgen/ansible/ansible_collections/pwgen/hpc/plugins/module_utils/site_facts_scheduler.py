"""Site facts: the batch scheduler's partitions, from Slurm's `scontrol -o` records or
PBS Pro's `-F json` output (plain functions, fed sample output by pwgen's tests).
Standard library only: it runs on the site with the module."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

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


def _pbs_direct_nodes(
    queue: dict[str, Any], name: str, vnodes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The vnodes of an execution queue: tied to it, or any untied one when it has none."""
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


def _pbs_nodes_of(
    queues: dict[str, dict[str, Any]],
    name: str,
    vnodes: list[dict[str, Any]],
    seen: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """A queue's vnodes; a route queue's are those of its destinations (loops cut)."""
    queue = queues.get(name)
    if queue is None or name in seen:
        return []
    if str(queue.get("queue_type", "")).lower() != "route":
        return _pbs_direct_nodes(queue, name, vnodes)
    found: dict[int, dict[str, Any]] = {}
    for target in str(queue.get("route_destinations", "")).split(","):
        target = target.strip().split("@")[0]
        for node in _pbs_nodes_of(queues, target, vnodes, seen | {name}):
            found[id(node)] = node
    return list(found.values())


def _pbs_partition(
    name: str, queue: dict[str, Any], members: list[dict[str, Any]] | None, default: bool
) -> dict[str, Any]:
    enabled = _pbs_true(queue.get("enabled", "False"))
    started = _pbs_true(queue.get("started", "False"))
    max_time = parse_walltime((queue.get("resources_max") or {}).get("walltime"))
    available = [(node.get("resources_available") or {}) for node in members or []]
    return {
        "name": name,
        "state": "down" if not enabled else "up" if started else "inactive",
        "nodes": len(members) if members is not None else None,
        "cpus_per_node": _smallest(_int_or_none(res.get("ncpus")) for res in available),
        "memory_mb_per_node": _smallest(pbs_size_to_mb(res.get("mem")) for res in available),
        "default": default,
        "max_time": format_walltime(max_time),
        "max_time_seconds": max_time,
    }


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
    return [
        _pbs_partition(
            name,
            queue,
            _pbs_nodes_of(queues, name, vnodes) if nodes_json is not None else None,
            name == default_queue,
        )
        for name, queue in queues.items()
    ]


def pbs_node_hosts(nodes_json: dict[str, Any] | None) -> list[str]:
    """Host names of the PBS vnodes (their MoM or resources_available.host)."""
    hosts = []
    for name, node in ((nodes_json or {}).get("nodes") or {}).items():
        host = node.get("Mom") or (node.get("resources_available") or {}).get("host") or name
        if host not in hosts:
            hosts.append(str(host))
    return hosts

"""PW clusters -> pwgen sites: the mapping shared by `pwgen inventory --from pw` and the
`pwgen.hpc.pw` Ansible inventory plugin.

Only clusters that are up (status `on`/`active`), have a slurm or pbs scheduler and
an address become sites; the others are returned as skipped, with the reason. Legacy
`/api/resources` entries are first converted to the shape of `/api/clusters`, so one
mapping serves both. Every problem is one `PWAPIError` naming the cluster and field.
"""

import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pwgen.errors import PWAPIError, SitesError
from pwgen.sites import RESERVED_LABELS, Site, validate_sites
from pwgen.validation import shown

USABLE_STATUSES = frozenset({"on", "active"})
# PW's schedulerType -> pwgen's Site.scheduler
SCHEDULERS: Mapping[str, str] = {"slurm": "slurm", "pbs": "pbspro"}

_MAX_LABEL = 63

# Fields of a cluster in GET /api/clusters and the JSON types each may have (null is
# always allowed). Unknown fields are ignored: the platform may add some.
_CLUSTER_FIELDS: Mapping[str, tuple[type, ...]] = {
    "id": (str, int),
    "name": (str,),
    "displayName": (str,),
    "type": (str,),
    "csp": (str,),
    "status": (str,),
    "schedulerType": (str,),
    "ipAddress": (str,),
    "connectionString": (str,),
    "user": (str,),
    "activeNodes": (int,),
    "maxNodes": (int,),
    "tags": (list, dict),
    "workspaceMounts": (list, dict),
    # only in clusters converted from the legacy /api/resources
    "privateIp": (str,),
    "workdir": (str,),
}
_TYPE_NAMES: Mapping[type, str] = {
    str: "a string",
    int: "an integer",
    list: "a list",
    dict: "an object",
}


@dataclass(frozen=True)
class SkippedCluster:
    """A cluster the PW API lists that does not become a site, and why."""

    name: str
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.status or 'no status'}): {self.reason}"


@dataclass(frozen=True)
class PWSites:
    """The usable clusters as sites, the others as skipped, and where they came from."""

    sites: list[Site]
    skipped: list[SkippedCluster]
    source: str = "PW API"


# ---------------------------------------------------------------- mapping


def objects(data: Any, what: str, source: str) -> list[dict[str, Any]]:
    """`data` as a list of JSON objects, or a PWAPIError."""
    if not isinstance(data, list):
        raise PWAPIError(f"{source}: expected a list of {what}, got {_json_type(data)}")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise PWAPIError(
                f"{source}: {what}[{index}] should be an object, got {_json_type(item)}"
            )
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def normalise_label(name: str) -> str:
    """A cluster name as a site label: `"GPU-Cluster.v2"` -> `gpu_cluster_v2`.

    Lowercase; every run of characters other than a-z and 0-9 becomes `_`; no
    leading or trailing `_`; `site_` in front of a leading digit, a reserved
    label or a Python keyword; at most 63 characters. "" if nothing is left.
    """
    label = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not label:
        return ""
    if label[0].isdigit() or label in RESERVED_LABELS or keyword.iskeyword(label):
        label = f"site_{label}"
    return label[:_MAX_LABEL].rstrip("_")


def _cluster_name(cluster: Mapping[str, Any], index: int, source: str) -> str:
    """The name to show and label by: `name`, else `displayName`."""
    ident = cluster.get("id")
    which = f"{source}: clusters[{index}]"
    if isinstance(ident, str | int) and not isinstance(ident, bool):
        which += f" (id {shown(ident)})"
    for key in ("name", "displayName"):
        value = cluster.get(key)
        if value is not None and not isinstance(value, str):
            raise PWAPIError(f"{which}: field {key!r} should be a string, got {shown(value)}")
        if value and value.strip():
            return value.strip()
    raise PWAPIError(f"{which}: field 'name' is missing or empty")


def _check_fields(cluster: Mapping[str, Any], name: str, source: str) -> None:
    for key, types in _CLUSTER_FIELDS.items():
        value = cluster.get(key)
        if value is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            expected = " or ".join(_TYPE_NAMES.get(kind, kind.__name__) for kind in types)
            raise PWAPIError(
                f"{source}: cluster {shown(name)}: field {key!r} should be {expected}, "
                f"got {shown(value)}"
            )


def _text(cluster: Mapping[str, Any], key: str) -> str:
    value = cluster.get(key)
    return value.strip() if isinstance(value, str) else ""


def _address(cluster: Mapping[str, Any]) -> tuple[str, str]:
    """(host, user): from `connectionString` ("user@ip"), else `ipAddress` and `user`."""
    host = user = ""
    connection = _text(cluster, "connectionString")
    if connection:
        before, at, after = connection.rpartition("@")
        host, user = (after.strip(), before.strip()) if at else (connection, "")
    return host or _text(cluster, "ipAddress"), user or _text(cluster, "user")


def clusters_to_sites(clusters: Any, source: str = "PW API") -> PWSites:
    """Map clusters (the JSON of GET /api/clusters) to sites; see the module docstring.

    Raises PWAPIError for an answer of the wrong shape (naming the cluster and the
    field), for two usable clusters whose names give the same label, and when no
    cluster is usable.
    """
    items = objects(clusters, "clusters", source)
    sites: list[Site] = []
    skipped: list[SkippedCluster] = []
    labels: dict[str, str] = {}
    for index, cluster in enumerate(items):
        name = _cluster_name(cluster, index, source)
        _check_fields(cluster, name, source)
        status = _text(cluster, "status")
        scheduler_type = _text(cluster, "schedulerType")
        host, user = _address(cluster)
        reason = _unusable_because(status, scheduler_type, host)
        if reason:
            skipped.append(SkippedCluster(name=name, status=status, reason=reason))
            continue
        label = normalise_label(name)
        if not label:
            raise PWAPIError(
                f"{source}: cluster {shown(name)}: its name gives no usable site label "
                "(it needs at least one letter or digit)"
            )
        if label in labels:
            raise PWAPIError(
                f"{source}: clusters {shown(labels[label])} and {shown(name)} both become "
                f"site label {label!r}: rename one of them in the PW platform"
            )
        labels[label] = name
        data: dict[str, Any] = {"label": label, "scheduler": SCHEDULERS[scheduler_type.lower()]}
        data["host"] = host
        if user:
            data["user"] = user
        workdir = _text(cluster, "workdir")
        if workdir:
            data["workdir"] = workdir
        sites.append(_validate_one(data, name, source))
    if not sites:
        raise PWAPIError(_nothing_usable(source, skipped))
    return PWSites(sites=sites, skipped=skipped, source=source)


def _unusable_because(status: str, scheduler_type: str, host: str) -> str:
    """Why a cluster cannot be a site, or "" when it can."""
    if status.lower() not in USABLE_STATUSES:
        return f"status is {status!r}, not on/active" if status else "no status"
    if scheduler_type.lower() not in SCHEDULERS:
        if scheduler_type:
            return f"unsupported scheduler type {scheduler_type!r} (slurm or pbs)"
        return "no scheduler type (not a slurm or pbs cluster)"
    if not host:
        return "no IP address or connection string"
    return ""


# Site fields -> the cluster fields they come from, for error messages.
_ORIGIN = {
    "host": "host (from connectionString/ipAddress)",
    "user": "user (from connectionString/user)",
    "workdir": "workdir (from variables.workdir)",
    "label": "label (from name)",
}


def _validate_one(data: dict[str, Any], name: str, source: str) -> Site:
    """Run one site through the same validator as sites.yaml; errors name the cluster."""
    prefix = f"{source}: cluster {shown(name)}"
    try:
        (site,) = validate_sites({"sites": [data]}, prefix)
    except SitesError as err:
        message = str(err)
        for site_field, origin in _ORIGIN.items():
            message = message.replace(f": sites[0].{site_field}:", f": {origin}:")
        raise PWAPIError(message.replace(": sites[0].", ": ")) from None
    return site


def _nothing_usable(source: str, skipped: Sequence[SkippedCluster]) -> str:
    if not skipped:
        return f"{source} lists no clusters: create or start one in the PW platform"
    shown = "; ".join(str(cluster) for cluster in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return (
        f"{source} lists no usable cluster (status on/active, scheduler slurm or pbs, "
        f"with an address): {shown}{more}"
    )


# ---------------------------------------------------------------- legacy API

# Fields of a resource in the legacy GET /api/resources and their JSON types.
_LEGACY_FIELDS: Mapping[str, tuple[type, ...]] = {
    "name": (str,),
    "status": (str,),
    "controllerIp": (str,),
    "variables": (dict,),
    "settings": (dict,),
}
_LEGACY_SUBFIELDS: Mapping[tuple[str, str], tuple[type, ...]] = {
    ("variables", "privateIp"): (str,),
    ("variables", "workdir"): (str,),
    ("settings", "slurmUsername"): (str,),
}


def legacy_to_clusters(resources: Any, source: str = "PW API") -> list[dict[str, Any]]:
    """Legacy /api/resources JSON -> clusters shaped like GET /api/clusters (all slurm)."""
    items = objects(resources, "resources", source)
    return [legacy_to_cluster(item, index, source) for index, item in enumerate(items)]


def legacy_to_cluster(
    resource: Mapping[str, Any], index: int = 0, source: str = "PW API"
) -> dict[str, Any]:
    """One legacy resource as a cluster dict; wrong types raise PWAPIError."""
    name = resource.get("name")
    which = f"{source}: resources[{index}]"
    if isinstance(name, str) and name.strip():
        which = f"{source}: resource {shown(name.strip())}"
    elif name is None or isinstance(name, str):
        raise PWAPIError(f"{which}: field 'name' is missing or empty")
    for key, types in _LEGACY_FIELDS.items():
        value = resource.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(_TYPE_NAMES[kind] for kind in types)
            raise PWAPIError(f"{which}: field {key!r} should be {expected}, got {shown(value)}")
    for (outer, key), types in _LEGACY_SUBFIELDS.items():
        value = (resource.get(outer) or {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(_TYPE_NAMES[kind] for kind in types)
            raise PWAPIError(
                f"{which}: field '{outer}.{key}' should be {expected}, got {shown(value)}"
            )
    variables: Mapping[str, Any] = resource.get("variables") or {}
    settings: Mapping[str, Any] = resource.get("settings") or {}
    return {
        "name": name,
        "status": resource.get("status"),
        "schedulerType": "slurm",
        "ipAddress": resource.get("controllerIp"),
        "user": settings.get("slurmUsername"),
        "privateIp": variables.get("privateIp"),
        "workdir": variables.get("workdir"),
    }

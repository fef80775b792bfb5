"""A site's batch job settings from its sites entry and its partition facts.

Used by the SSH providers of `remote.py`: the facts must agree with the sites file, the
partition must exist, the partition's facts fill in the node shape and cap a defaulted
walltime, and the blocks drain before their walltime ends.
"""

import math
import shlex
from pathlib import Path

from pwgen.configgen.settings import FACTS, Setting, Settings, SiteOrigin
from pwgen.errors import ConfigError
from pwgen.facts import Partition, SiteFacts
from pwgen.sites import Site

#: Seconds before a block's walltime when its workers stop taking tasks.
DRAIN_BEFORE_END = 120


def check_scheduler(site: Site, facts: SiteFacts, facts_file: Path) -> None:
    """The facts were gathered from the scheduler the sites file names."""
    if facts.scheduler != site.scheduler:
        raise ConfigError(
            f"{facts_file}: site {site.label!r} is {site.scheduler} in the sites file but the "
            f"facts say {facts.scheduler}; run `pwgen provision` again"
        )


def site_partition(site: Site, facts: SiteFacts) -> Partition:
    """The partition the site's blocks go to (its `partition`, else the default one)."""
    partition = facts.partition(site.partition)
    if partition is None:
        known = ", ".join(p.name for p in facts.partitions) or "none"
        raise ConfigError(
            f"site {site.label!r}: partition {site.partition!r} is not on the site "
            f"(partitions: {known})"
        )
    return partition


def partition_setting(partition: Partition, origin: SiteOrigin) -> Setting:
    """The partition (or PBS queue) name: given in the sites file, or the facts' default."""
    given = origin.label if origin.site.partition else f"{FACTS}: default partition"
    return Setting(partition.name, given)


def walltime_setting(partition: Partition, origin: SiteOrigin) -> Setting:
    """The block walltime; a defaulted one is clamped to the partition's limit, a given
    one over it is refused."""
    site = origin.site
    limit = partition.max_time_seconds
    if limit is None or walltime_seconds(site.walltime) <= limit:
        return origin.setting("walltime")
    if "walltime" in site.model_fields_set:
        raise ConfigError(
            f"site {site.label!r}: walltime {site.walltime} exceeds the {partition.name} "
            f"partition's limit {partition.max_time}"
        )
    hours, rest = divmod(limit, 3600)
    clamped = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return Setting(clamped, f"{FACTS}: the default {site.walltime} clamped to the partition limit")


def drain_setting(walltime: str) -> Setting:
    """HTEX's drain_period for blocks of this walltime: workers stop taking tasks
    DRAIN_BEFORE_END seconds (a quarter of a short walltime) before the scheduler's
    end, so the tasks they run finish first (pwgen.placement keeps longer tasks away)."""
    seconds = walltime_seconds(walltime)
    before_end = min(DRAIN_BEFORE_END, seconds // 4)
    return Setting(seconds - before_end, f"drain {before_end} s before the block's walltime")


def walltime_seconds(walltime: str) -> int:
    """Seconds of a `[D-]HH:MM:SS` walltime."""
    days, _, clock = walltime.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days) if days else 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def node_shape(partition: Partition) -> Settings:
    """A Slurm provider's cores_per_node and mem_per_node (whole GB) from partition facts."""
    shape = Settings()
    if partition.cpus_per_node:
        shape["cores_per_node"] = Setting(
            partition.cpus_per_node, f"{FACTS}: partition {partition.name}"
        )
    memory = partition.memory_mb_per_node
    if memory and memory >= 1024:
        shape["mem_per_node"] = Setting(
            math.floor(memory / 1024), f"{FACTS}: {memory} MB per node in {partition.name}, in GB"
        )
    return shape


def worker_init_setting(activate: str, origin: SiteOrigin) -> Setting:
    """The block's init script: source the env's activation script, then the site's lines."""
    lines = [f". {shlex.quote(activate)}", *origin.site.worker_init]
    source = f"{FACTS}: env activation" + (f" + {origin.label}" if origin.site.worker_init else "")
    return Setting("\n".join(lines), source)

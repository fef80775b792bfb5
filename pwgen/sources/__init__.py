"""Where sites come from: a sites.yaml the user writes, or the Parallel Works API (`pw`).

`load_source("pw")` asks the PW API (see `pwgen.sources.pw`); any other value is
the path of a sites file. Both give validated `Site` models, so everything
downstream has one input shape.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pwgen.sites import Site, load_sites
from pwgen.sources.pw import fetch_sites
from pwgen.sources.pw_clusters import SkippedCluster

PW_SOURCE = "pw"


@dataclass(frozen=True)
class LoadedSites:
    """Sites from one source; `skipped` lists PW clusters that did not become sites."""

    sites: list[Site]
    name: str
    skipped: list[SkippedCluster] = field(default_factory=list)


def load_source(source: str, environ: Mapping[str, str] | None = None) -> LoadedSites:
    """`pw` -> the PW API (settings from `environ`, default os.environ); else a sites file.

    Raises PWAPIError or SitesError (both PwgenError) with a one-line message.
    """
    if source == PW_SOURCE:
        found = fetch_sites(environ)
        return LoadedSites(sites=found.sites, name=found.source, skipped=found.skipped)
    return LoadedSites(sites=load_sites(Path(source)), name=source)


__all__ = ["PW_SOURCE", "LoadedSites", "load_source"]

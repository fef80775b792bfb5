"""Where sites come from: a sites.yaml the user writes, or the Parallel Works API (`pw`).

`load_source("pw")` asks the PW API (see `pwgen.sources.pw`); any other value is
the path of a sites file. Both give validated `Site` models, so everything
downstream has one input shape.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pwgen.errors import PWAPIError
from pwgen.sites import Site, load_sites
from pwgen.sources.pw_clusters import SkippedCluster

PW_SOURCE = "pw"
#: Overrides of PW's ssh conventions (docs/pw.md): the platform's user name for each
#: cluster, and the workspace's default ssh key (no IdentityFile).
PW_USER_VARIABLE = "PWGEN_PW_USER"
PW_KEY_VARIABLE = "PWGEN_PW_IDENTITY_FILE"


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
        from pwgen.sources.pw import fetch_sites  # httpx: only to ask the PW API

        environ = os.environ if environ is None else environ
        found = fetch_sites(environ)
        sites = [_pw_ssh_overrides(site, environ) for site in found.sites]
        return LoadedSites(sites=sites, name=found.source, skipped=found.skipped)
    return LoadedSites(sites=load_sites(Path(source)), name=source)


def _pw_ssh_overrides(site: Site, environ: Mapping[str, str]) -> Site:
    """A PW site with the user and key of $PWGEN_PW_USER / $PWGEN_PW_IDENTITY_FILE."""
    changes: dict[str, Any] = {}
    for variable, key in ((PW_USER_VARIABLE, "user"), (PW_KEY_VARIABLE, "identity_file")):
        value = environ.get(variable, "").strip()
        if value:
            changes[key] = value
    if not changes:
        return site
    try:
        return Site.model_validate({**site.model_dump(exclude_unset=True), **changes})
    except ValidationError as err:
        problem = err.errors()[0]
        raise PWAPIError(f"${PW_USER_VARIABLE}/${PW_KEY_VARIABLE}: {problem['msg']}") from None


def render_sites_file(sites: Sequence[Site], source: str) -> str:
    """A sites.yaml holding `sites` as given (defaults left out): `pwgen sites -o`."""
    entries = [site.model_dump(mode="json", exclude_unset=True) for site in sites]
    header = f"# Sites from {source}, written by `pwgen sites`. Edit freely.\n"
    return header + yaml.safe_dump({"sites": entries}, sort_keys=False)


__all__ = ["PW_SOURCE", "LoadedSites", "load_source", "render_sites_file"]

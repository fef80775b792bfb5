"""A site's `flux:` key: where the Flux of an `executor: flux` site comes from.

    flux:
      method: system            # conda | system | source
      version: 0.88.0           # the pin: `flux version` must report it
      path: /opt/flux           # system: the existing install's prefix
      tarball: /srv/flux-core-0.88.0.tar.gz   # source: a path here, or an https:// URL
      sha256: b3e5...           # source: the tarball's sha256

conda installs conda-forge's flux-core into the site's env (pwgen's default without
the key); system uses a Flux the site's admins provide at `path` (nothing installed);
source builds a release tarball into `path` if given, else the site user's
`~/.pwgen/flux/<version>`. The pwgen.hpc.flux role does it (`flux_hostvars` are its
variables); every method also puts Flux's Python bindings on the env's path, and the
env gets the packages they import (`FLUX_PYTHON_PACKAGES`, added to the site's lock).
"""

import os
import re
from collections.abc import Sequence
from typing import Any, Literal, Self

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pwgen.sitevalues import refuse_code
from pwgen.validation import shown

FluxMethod = Literal["conda", "system", "source"]
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What Flux's Python bindings import (Parsl's FluxExecutor needs them in the env).
FLUX_PYTHON_PACKAGES = ("cffi", "pyyaml", "ply")
#: srun's PMI for a Flux instance's brokers (pwgen.providers.FluxInstanceLauncher):
#: without pmi2 (Slurm's MpiDefault none or pmix) srun still exits 0, but every node
#: starts a 1-node instance of its own.
DEFAULT_SRUN_ARGS = ("--mpi=pmi2",)
# Per method: the keys it needs, and the keys it does not use.
_NEEDS = {"conda": (), "system": ("path", "version"), "source": ("tarball", "sha256", "version")}
_UNUSED = {"conda": ("path", "tarball", "sha256"), "system": ("tarball", "sha256"), "source": ()}
_WHAT = {
    "version": "the flux-core version it pins",
    "path": "the path of the site's Flux",
    "tarball": "a tarball to build",
    "sha256": "the tarball's sha256",
}


class FluxSpec(BaseModel):
    """How an `executor: flux` site gets flux-core."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: FluxMethod = Field("conda", description="conda, system (an existing Flux) or source")
    version: str | None = Field(
        None, description="the flux-core version pinned, e.g. 0.88.0 (system, source: required)"
    )
    path: str | None = Field(
        None,
        description="Flux's prefix on the site: system's install; source's target "
        "(default ~/.pwgen/flux/<version>)",
    )
    tarball: str | None = Field(
        None, min_length=1, description="source: release tarball, a path here or an https:// URL"
    )
    sha256: str | None = Field(None, description="source: the tarball's sha256 (64 hex digits)")

    @field_validator("*")
    @classmethod
    def _refuse_code(cls, value: Any) -> Any:
        return refuse_code(value)

    @field_validator("version")
    @classmethod
    def _check_version(cls, version: str | None) -> str | None:
        if version is not None and not _VERSION.match(version):
            raise ValueError(f"{shown(version)} is not a flux-core version such as 0.88.0")
        return version

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith(("/", "~/")):
            raise ValueError(f"{shown(path)} is not an absolute path (or one under ~/)")
        return path

    @field_validator("tarball")
    @classmethod
    def _check_tarball(cls, tarball: str | None) -> str | None:
        if tarball is None or tarball.startswith("https://"):
            return tarball
        if "://" in tarball:
            raise ValueError(f"{shown(tarball)}: a URL must be https://")
        if not tarball.startswith(("/", "~/")):
            raise ValueError(f"{shown(tarball)} is not an absolute path (or one under ~/)")
        return tarball

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, sha256: str | None) -> str | None:
        if sha256 is not None and not _SHA256.match(sha256):
            raise ValueError(f"{shown(sha256)} is not a sha256 (64 lowercase hex digits)")
        return sha256

    @model_validator(mode="after")
    def _check_method(self) -> Self:
        for key in _NEEDS[self.method]:
            if getattr(self, key) is None:
                raise ValueError(f"method {self.method} needs {_WHAT[key]} ({key})")
        for key in _UNUSED[self.method]:
            if getattr(self, key) is not None:
                raise ValueError(f"{key} is not used by method {self.method}")
        return self


def flux_hostvars(spec: FluxSpec | None) -> dict[str, Any]:
    """The pwgen.hpc.flux role's variables for a flux site, as `pwgen_flux_*` host variables
    (pwgen.hpc.provision maps them to `flux_*`). A tarball path is expanded here, on the
    controller, where the role reads it."""
    spec = spec or FluxSpec()
    hostvars: dict[str, Any] = {"pwgen_flux_method": spec.method}
    for key in ("version", "path", "sha256"):
        value = getattr(spec, key)
        if value is not None:
            hostvars[f"pwgen_flux_{key}"] = value
    if spec.tarball is not None:
        tarball = spec.tarball
        hostvars["pwgen_flux_tarball"] = (
            tarball if tarball.startswith("https://") else os.path.expanduser(tarball)
        )
    return hostvars


def with_flux_packages(extra_packages: Sequence[str]) -> list[str]:
    """A flux site's extra packages: the site's own, then those Flux's bindings import that
    the site does not name already (its own pin wins)."""
    named = {canonicalize_name(Requirement(package).name) for package in extra_packages}
    added = [name for name in FLUX_PYTHON_PACKAGES if canonicalize_name(name) not in named]
    return [*extra_packages, *added]

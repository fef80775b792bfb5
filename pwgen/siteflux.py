"""A site's `flux:` key: where the Flux of an `executor: flux` site comes from.

    flux:
      method: system            # conda | system | source
      version: 0.88.0           # the pin (optional)
      path: /opt/flux           # system: the existing install's prefix
      tarball: flux-core-0.88.0.tar.gz   # source: the release tarball to build

conda installs conda-forge's flux-core into the site's env (pwgen's default without
the key); system uses a Flux the site's admins provide at `path`; source builds a
release tarball (into `path` if given, else the site user's prefix).
"""

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pwgen.sitevalues import refuse_code
from pwgen.validation import shown

FluxMethod = Literal["conda", "system", "source"]
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class FluxSpec(BaseModel):
    """How an `executor: flux` site gets flux-core."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: FluxMethod = Field("conda", description="conda, system (an existing Flux) or source")
    version: str | None = Field(None, description="the flux-core version pinned, e.g. 0.88.0")
    path: str | None = Field(None, description="absolute prefix of Flux on the site")
    tarball: str | None = Field(None, min_length=1, description="source: release tarball")

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
        if path is not None and not path.startswith("/"):
            raise ValueError(f"{shown(path)} is not an absolute path")
        return path

    @model_validator(mode="after")
    def _check_method(self) -> Self:
        if self.method == "system" and self.path is None:
            raise ValueError("method system needs the path of the site's Flux")
        if self.method != "source" and self.tarball is not None:
            raise ValueError(f"tarball is for method source, not {self.method}")
        if self.method == "source" and self.tarball is None:
            raise ValueError("method source needs a tarball to build")
        if self.method == "conda" and self.path is not None:
            raise ValueError("path is not used by method conda (Flux goes into the env)")
        return self

"""Site facts: the Flux the pinned env imports, and how a block starts a Flux instance.

The pwgen.hpc.flux role puts Flux's Python bindings on the env's path (conda: in the env;
system, source: a .pth file pointing at `<prefix>/lib/pythonX.Y/site-packages`), so the
env's Python finding `flux` is what says where Flux is: its prefix is the directory above
that `lib/`, its command `<prefix>/bin/flux`. A multi-node instance is bootstrapped with
`srun ... flux start`, over Slurm's PMI-2: srun must be asked for it (`--mpi=pmi2`)
unless the cluster's MpiDefault is pmi2 already (with none or pmix, srun starts one
single-node instance per node instead). Standard library only: it runs on the site.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

# Runs a command on the site: argv -> (rc, stdout, stderr) (the module's run_command).
Runner = Callable[[list[str]], tuple[int, str, str]]

_SITE_PACKAGES = re.compile(r"^(?P<prefix>/.*?)/lib(?:64)?/python\d+\.\d+/site-packages$")
_FLUX_VERSION = re.compile(r"^commands:\s+(\S+)", re.MULTILINE)
_MPI_DEFAULT = re.compile(r"^MpiDefault\s*=\s*(\S*)", re.MULTILINE)
# The PMI srun must provide for `flux start` to form one instance across nodes.
BOOTSTRAP_MPI = "pmi2"


def parse_flux_version(text: str) -> str | None:
    """The version `flux version` reports for its commands (`commands:    0.88.0`)."""
    found = _FLUX_VERSION.search(text)
    return found.group(1) if found else None


def parse_mpi_default(text: str) -> str | None:
    """Slurm's MpiDefault from `scontrol show config` (`MpiDefault = none`)."""
    found = _MPI_DEFAULT.search(text)
    return (found.group(1) or None) if found else None


def srun_args(mpi_default: str | None) -> list[str]:
    """What srun needs to bootstrap a multi-node Flux instance on this cluster."""
    return [] if mpi_default == BOOTSTRAP_MPI else [f"--mpi={BOOTSTRAP_MPI}"]


def prefix_of_bindings(site_packages: str) -> str | None:
    """`/p/lib/python3.11/site-packages` -> `/p` (None when it is not laid out that way)."""
    found = _SITE_PACKAGES.match(os.path.normpath(site_packages))
    return found.group("prefix") if found else None


def flux_facts(
    run: Runner, origin: str | None, scontrol: str | None, warn: Callable[[str], None]
) -> dict[str, Any] | None:
    """The `flux` fact: None when the env's Python finds no `flux` package (`origin`: its
    `flux/__init__.py`); else its version, prefix, command, bindings directory, and
    Slurm's MpiDefault with the srun arguments a block bootstraps Flux with (`scontrol`
    None: not a Slurm site, both None)."""
    if not origin:
        return None
    bindings = os.path.dirname(os.path.dirname(origin))
    prefix = prefix_of_bindings(bindings)
    facts: dict[str, Any] = {
        "version": None,
        "prefix": prefix,
        "command": None,
        "bindings": bindings,
        "mpi_default": None,
        "srun_args": None,
    }
    command = os.path.join(prefix, "bin", "flux") if prefix else None
    if command and os.access(command, os.X_OK):
        rc, out, err = run([command, "version"])
        facts["command"] = command
        facts["version"] = parse_flux_version(out) if rc == 0 else None
        if facts["version"] is None:
            warn(f"`{command} version` reports no version: {' '.join(err.split())[-300:]}")
    else:
        warn(f"the env imports flux from {bindings}, but there is no flux command next to it")
    if scontrol:
        facts.update(_bootstrap(run, scontrol, warn))
    return facts


def _bootstrap(run: Runner, scontrol: str, warn: Callable[[str], None]) -> dict[str, Any]:
    rc, out, err = run([scontrol, "show", "config"])
    mpi_default = parse_mpi_default(out) if rc == 0 else None
    if mpi_default is None:
        warn(f"{scontrol} show config gave no MpiDefault: {' '.join(err.split())[-300:]}")
    return {"mpi_default": mpi_default, "srun_args": srun_args(mpi_default)}

"""Can a PBS Pro MPI site's `mpiexec` take Parsl's MPI prefix? Checked from the facts.

On PBS Pro, Parsl's MPIExecutor gives each app `$PARSL_MPI_PREFIX` = `mpiexec -n N -ppn M
-hosts h1,h2 <launcher_options>` (parsl/executors/high_throughput/mpi_prefix_composer.py):
the flags of MPICH's Hydra, Intel MPI and Cray PALS. Open MPI's mpiexec refuses them
(`mpiexec: Error: unknown option "-ppn"`), so every MPI app would fail at run time. The
facts' `mpi` says which mpiexec the site's PATH finds (over ssh, after ~/.bashrc):

- Open MPI: refused, one line, before anything runs; but a site with a `worker_init`
  (which may `module load` another MPI) only gets a warning;
- none on the PATH: a warning (worker_init may still bring one);
- MPICH-style, or one pwgen cannot tell: a note in the generated config.

A warning is printed (`pwgen: warning: ...`) and kept among the notes above the site's
executor in the generated config. Slurm MPI sites launch with srun: nothing to check.
"""

import sys

from pwgen.errors import ConfigError
from pwgen.facts import MpiInfo, SiteFacts
from pwgen.sites import Site

#: Parsl's PBS Pro prefix, as messages name it.
PARSL_PREFIX = "Parsl's PBS Pro MPI prefix (mpiexec -n N -ppn M -hosts ...)"
#: The mpiexecs that take it.
MPICH_STYLE = "an MPICH-style mpiexec (MPICH, Intel MPI, Cray PALS)"


def mpiexec_notes(site: Site, facts: SiteFacts) -> tuple[str, ...]:
    """What the generated config says above the site's executor about its mpiexec (none
    but for `executor: mpi` on PBS Pro). Warnings are printed too; an Open MPI mpiexec
    that no worker_init may replace is a ConfigError."""
    if site.executor != "mpi" or site.scheduler != "pbspro":
        return ()
    if not facts.mpi_probed:
        return ("mpiexec: not checked (facts gathered before pwgen looked: provision again)",)
    found = facts.mpi
    if found is None:
        return _warning(
            f"site {site.label!r}: no mpiexec on the site's PATH; every MPI app fails unless the "
            f"site's worker_init puts {MPICH_STYLE} first on PATH (docs/mpi.md)"
        )
    if found.mpich_style:
        return (f"mpiexec: {_described(found)}: takes {PARSL_PREFIX}",)
    if found.flavor == "unknown":
        return (f"mpiexec: {_described(found)}: pwgen cannot tell if it takes {PARSL_PREFIX}",)
    problem = (
        f"site {site.label!r}: {found.mpiexec} on the site's PATH is Open MPI "
        f"({found.version or 'version unknown'}), which refuses {PARSL_PREFIX}"
    )
    if not site.worker_init:
        raise ConfigError(
            f"{problem}: put {MPICH_STYLE} first on PATH in the site's worker_init, or in its "
            "~/.bashrc and run `pwgen provision` again; see docs/mpi.md"
        )
    return _warning(
        f"{problem}; every MPI app fails unless the site's worker_init puts {MPICH_STYLE} "
        "first on PATH (docs/mpi.md)"
    )


def _described(found: MpiInfo) -> str:
    version = f", {found.version}" if found.version else ""
    return f"{found.mpiexec} ({found.flavor}{version})"


def _warning(line: str) -> tuple[str, ...]:
    """Print `line` as pwgen's warnings are, and keep it for the config's comments."""
    print(f"pwgen: warning: {line}", file=sys.stderr)
    return (f"warning: {line}",)

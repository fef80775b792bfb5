"""MPICH on the lab's PBS sites, set up the way a centre's default MPI module is.

Parsl composes an MPI app's launcher on PBS as `mpiexec -n N -ppn M -hosts h1,h2`:
MPICH's (Hydra) flags. Debian's default `mpiexec` is Open MPI's, which refuses `-ppn`.
So a PBS site's user finds, first on PATH, `mpiexec` and `mpicc` of MPICH, and Hydra
starts its proxies on the other nodes of the job through PBS's task manager
(`pbs_tmrsh`, as OpenPBS documents for MPICH), not through ssh: the lab's compute nodes
run no sshd, and the ranks stay inside the PBS job.
"""

import shlex
from pathlib import Path

from pwgen.lab.templating import make_dir, write_if_changed

MPICH_MPIEXEC = "/usr/bin/mpiexec.mpich"
MPICH_MPICC = "/usr/bin/mpicc.mpich"

# Hydra finds hydra_pmi_proxy next to the mpiexec it ran as: exec it, never symlink it.
_EXEC = '#!/bin/sh\nexec {target} "$@"\n'
# Hydra's rsh launcher quotes the proxy's command line for a remote shell; pbs_tmrsh
# runs argv as is (no shell): give it one.
_TMRSH = '#!/bin/sh\nhost=$1\nshift\nexec {tmrsh} "$host" /bin/sh -c "$*"\n'


def bin_dir(pbs_prefix: Path) -> Path:
    """Beside the OpenPBS build every PBS site uses (the lab's state dir is root's only)."""
    return pbs_prefix / "mpich" / "bin"


def write_files(pbs_prefix: Path) -> None:
    """The MPICH commands (root's, 0755) under `bin_dir`."""
    directory = bin_dir(pbs_prefix)
    make_dir(directory.parent)
    make_dir(directory)
    scripts = {
        "mpiexec": _EXEC.format(target=MPICH_MPIEXEC),
        "mpicc": _EXEC.format(target=MPICH_MPICC),
        "tmrsh": _TMRSH.format(tmrsh=pbs_prefix / "bin" / "pbs_tmrsh"),
    }
    for name, text in scripts.items():
        write_if_changed(directory / name, text, 0o755)


def profile_lines(pbs_prefix: Path) -> str:
    """What the site user's shells run to have MPICH (the lab's `module load mpich`)."""
    directory = shlex.quote(str(bin_dir(pbs_prefix)))
    tmrsh = shlex.quote(str(bin_dir(pbs_prefix) / "tmrsh"))
    return (
        f'case ":$PATH:" in *:{directory}:*) ;; *) export PATH={directory}:"$PATH" ;; esac\n'
        f"export HYDRA_LAUNCHER=rsh HYDRA_LAUNCHER_EXEC={tmrsh}\n"
    )

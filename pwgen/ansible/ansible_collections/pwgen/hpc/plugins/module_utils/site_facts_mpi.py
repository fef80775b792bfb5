"""Site facts: the `mpiexec` first on the PATH, and which MPI it belongs to.

On PBS Pro, Parsl's MPIExecutor gives apps `$PARSL_MPI_PREFIX` = `mpiexec -n N -ppn M
-hosts h1,h2 ...`: the flags of MPICH's Hydra, Intel MPI and Cray PALS. Open MPI's
mpiexec refuses them (`unknown option "-ppn"`), so pwgen's config generator checks the
flavour found here. The PATH is the one this module runs with: over ssh, after the
site's ~/.bashrc. `mpiexec --version` runs as an argv (no shell) with a timeout: a
broken MPI must not hang the facts. Standard library only: it runs on the site.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

#: Seconds `mpiexec --version` may take (it only prints; Hydra and ORTE take ~0.1 s).
VERSION_TIMEOUT = 15
#: Characters of the version line kept in the facts.
VERSION_CHARS = 200

# Markers of each flavour in `mpiexec --version`, tried in this order. Intel MPI's
# mpiexec is a Hydra too, so it is told apart before MPICH's.
_MARKERS = (
    ("openmpi", re.compile(r"\((?:OpenRTE|Open MPI|PRRTE)\)|open-mpi\.org")),
    ("intel", re.compile(r"Intel\(R\) MPI Library")),
    ("mpich", re.compile(r"HYDRA build details")),
    ("cray", re.compile(r"\bPALS\b|Cray", re.IGNORECASE)),
)
# Cray PALS's mpiexec lives under /opt/cray/pals/<version>/bin.
_PALS_PATH = re.compile(r"/pals/")
_DIGIT = re.compile(r"\d")


def mpiexec_flavor(text: str, path: str = "") -> str:
    """`mpich`, `intel`, `openmpi` or `cray` from `mpiexec --version` output (and the
    command's resolved path, for PALS); `unknown` when none matches."""
    for flavor, marker in _MARKERS:
        if marker.search(text):
            return flavor
    return "cray" if _PALS_PATH.search(path) else "unknown"


def version_line(text: str) -> str | None:
    """The first output line that holds a digit, spaces squeezed: `mpiexec.openmpi
    (OpenRTE) 4.1.4`, `Version: 4.0.2` (Hydra), `Intel(R) MPI Library ... Version 2021.6`."""
    for line in text.splitlines():
        if _DIGIT.search(line):
            return _squeezed(line)[:VERSION_CHARS]
    return None


def _squeezed(text: str) -> str:
    """`text` on one line, single-spaced, without control characters (the facts refuse them)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def run_version(mpiexec: str) -> tuple[int, str, str]:
    """`<mpiexec> --version`: (rc, stdout, stderr); rc -1 when it timed out or could not start,
    negative when a signal ended it."""
    try:
        done = subprocess.run(
            [mpiexec, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"no answer in {VERSION_TIMEOUT} s"
    except OSError as err:
        return -1, "", str(err)
    return done.returncode, done.stdout, done.stderr


def mpi_facts(
    warn: Callable[[str], None],
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[[str], tuple[int, str, str]] = run_version,
) -> dict[str, Any] | None:
    """The `mpi` fact: None when no `mpiexec` is on the PATH; else its path, flavour and
    version line (flavour `unknown`, with a warning, when `--version` fails)."""
    mpiexec = which("mpiexec")
    if mpiexec is None:
        return None
    rc, out, err = run(mpiexec)
    text = f"{out}\n{err}"
    if rc != 0:
        status = f" (exit {rc})" if rc > 0 else ""
        warn(f"`{mpiexec} --version` failed{status}: {_squeezed(text)[-300:]}")
        return {"mpiexec": mpiexec, "flavor": "unknown", "version": None}
    flavor = mpiexec_flavor(text, os.path.realpath(mpiexec))
    return {"mpiexec": mpiexec, "flavor": flavor, "version": version_line(text)}

"""OpenPBS for the lab: built once per machine from a source tarball and its patches.

Like the lab's Flux (pwgen.lab.flux): the nodes share one root filesystem, so one
install under /opt serves every PBS site of every lab. A build is keyed by the
tarball's sha256: a finished one holds a marker with that sha256 and is reused;
one without it (interrupted) is rebuilt; a lock serialises concurrent builds.
The `*.patch` files next to the tarball are applied in name order (OpenPBS
23.06 needs two upstream patches to compile against Python 3.11).
"""

import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pwgen.lab.errors import LabError
from pwgen.lab.flux import (
    FluxBuild,
    build_once,
    checked_tarball,
    prefix_for,
    run_step,
    sha256_of,
)
from pwgen.lab.system import ensure_packages

PBS_ROOT = Path("/opt/pwgen-lab/pbs")
MARKER = ".pwgen-flux-built"  # the name flux.is_built reads; holds the tarball's sha256
TARBALL_ENV = "PWGEN_PBS_TARBALL"
OPENPBS = "OpenPBS"
VERSION = "23.06.06"
TARBALL_NAME = f"openpbs-v{VERSION}.tar.gz"
# Known OpenPBS tarballs: a file with this name must have this sha256.
PINNED_SHA256 = {
    TARBALL_NAME: "8223d49572e13f07c38d724ead9e7220092c8900a7b7cdf7c4bda89db21303cf",
}
# Debian packages OpenPBS's autogen, configure, make and its daemons need.
BUILD_PACKAGES = (
    *("gcc", "g++", "make", "libtool", "autoconf", "automake", "patch", "perl"),
    *("libhwloc-dev", "libx11-dev", "libxt-dev", "libedit-dev", "libical-dev"),
    *("libncurses-dev", "python3-dev", "tcl-dev", "tk-dev", "swig", "libexpat1-dev"),
    *("libssl-dev", "libxext-dev", "libxft-dev", "expat", "tcl", "tk"),
    *("postgresql", "postgresql-contrib", "postgresql-server-dev-all"),
)
# pbs_iff authenticates users by a reserved port; pbs_rcp copies files as them.
SETUID_PROGRAMS = ("sbin/pbs_iff", "sbin/pbs_rcp")
_TARBALL = re.compile(r"^openpbs-v?(\d+\.\d+\.\d+)\.tar\.gz$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PbsBuild(FluxBuild):
    """A finished OpenPBS install under `prefix` (PBS_EXEC)."""


def check_tarball(source: str) -> tuple[Path, str]:
    """The tarball and its sha256, checked before anything is built: one LabError if wrong."""
    what = f"an OpenPBS source tarball; set ${TARBALL_ENV}"
    path = checked_tarball(Path(source), "", what, "openpbs/autogen.sh")
    sha256 = sha256_of(path)
    pinned = PINNED_SHA256.get(path.name)
    if pinned is not None and sha256 != pinned:
        raise LabError(f"{path}: sha256 {sha256} is not the pinned {pinned} of {path.name}")
    return path, sha256


def version_of(tarball: Path) -> str:
    found = _TARBALL.match(tarball.name)
    return found.group(1) if found else VERSION


def ensure_pbs(source: str, root: Path = PBS_ROOT, progress: Progress = lambda _: None) -> PbsBuild:
    """Build (or reuse) OpenPBS from the tarball `source`."""
    started = time.monotonic()
    tarball, sha256 = check_tarball(source)
    prefix = prefix_for(sha256, root)
    built = build_once(root, sha256, lambda: _build(tarball, sha256, prefix, progress))
    seconds = time.monotonic() - started
    return PbsBuild(prefix, sha256, version_of(tarball), built, seconds)


def _build(tarball: Path, sha256: str, prefix: Path, progress: Progress) -> None:
    progress("installing OpenPBS's build dependencies")
    ensure_packages(True, BUILD_PACKAGES)
    progress(f"building OpenPBS into {prefix} (about 3 minutes)")
    shutil.rmtree(prefix, ignore_errors=True)  # a half-finished build
    with tempfile.TemporaryDirectory(prefix="pwgen-pbs-") as scratch:
        _compile(tarball, Path(scratch), prefix)
    for program in SETUID_PROGRAMS:  # `make install` leaves them plain
        (prefix / program).chmod(0o4755)
    (prefix / MARKER).write_text(f"{sha256}\n", encoding="utf-8")
    (prefix / MARKER).chmod(0o644)


def _compile(tarball: Path, work: Path, prefix: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(work, filter="data")
    source = next(work.glob("openpbs-*/autogen.sh")).parent
    patches = sorted(tarball.parent.glob("*.patch"))
    old_umask = os.umask(0o022)  # the install must be readable by every lab user
    try:
        for patch in patches:
            run_step(source, ["patch", "-p1", "-i", str(patch)], OPENPBS)
        steps = (
            ["./autogen.sh"],
            # The system Python: one under /root would put an rpath others can't read.
            [
                "./configure",
                f"--prefix={prefix}",
                "--with-python=/usr",
                "PYTHON=/usr/bin/python3",
            ],
            ["make", f"-j{os.cpu_count() or 2}"],
            ["make", "install"],
        )
        for argv in steps:
            run_step(source, argv, OPENPBS)
    finally:
        os.umask(old_umask)

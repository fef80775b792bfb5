"""Flux for the lab: flux-core built once per machine from a release tarball.

The lab's nodes are network namespaces on one root filesystem, so one build under
/opt serves every node of every lab, the way a site's admins provide Flux at a
path. A build is keyed by its tarball's sha256: a finished one holds a marker with
that sha256 and is reused; one without the marker (interrupted) is rebuilt; a lock
file serialises concurrent builds of the same tarball.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pwgen.lab.errors import LabError
from pwgen.lab.system import ensure_packages, run

FLUX_ROOT = Path("/opt/pwgen-lab/flux")
MARKER = ".pwgen-flux-built"  # in the prefix; holds the tarball's sha256
RELEASE = "release"  # `--flux release`: the pinned official release, downloaded
RELEASE_VERSION = "0.88.0"
RELEASE_URL = (
    "https://github.com/flux-framework/flux-core/releases/download/"
    f"v{RELEASE_VERSION}/flux-core-{RELEASE_VERSION}.tar.gz"
)
# Known flux-core tarballs: a file with this name must have this sha256.
PINNED_SHA256 = {
    f"flux-core-{RELEASE_VERSION}.tar.gz": (
        "b3e510787bc1d5901de31598d6c5596a6548b4ff3ec374bbf86431f4883cf14b"
    ),
}
# Debian packages flux-core's configure and make need (not autotools: a release
# tarball ships its configure script).
BUILD_PACKAGES = (
    "make",
    "gcc",
    "pkg-config",
    "libc6-dev",
    "libzmq3-dev",
    "uuid-dev",
    "libjansson-dev",
    "liblz4-dev",
    "libarchive-dev",
    "libhwloc-dev",
    "libsqlite3-dev",
    "lua5.1",
    "liblua5.1-0-dev",
    "lua-posix",
    "python3-dev",
    "python3-cffi",
    "python3-ply",
    "python3-setuptools",
    "python3-yaml",
    "jq",
)
BUILD_TIMEOUT = 3600.0
DOWNLOAD_TIMEOUT = 120.0
_TARBALL_NAME = re.compile(r"^flux-core-(\d+\.\d+\.\d+)\.tar\.gz$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FluxBuild:
    """A finished Flux install under `prefix`."""

    prefix: Path
    sha256: str
    version: str
    built: bool  # built now (False: an earlier build was reused)
    seconds: float


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prefix_for(sha256: str, root: Path = FLUX_ROOT) -> Path:
    return root / sha256[:16]


def is_built(prefix: Path, sha256: str) -> bool:
    try:
        return (prefix / MARKER).read_text(encoding="utf-8").strip() == sha256
    except OSError:
        return False


def flux_version(prefix: Path) -> str:
    """The version `PREFIX/bin/flux version` reports for its commands."""
    out = run([str(prefix / "bin" / "flux"), "version"], timeout=30)
    found = re.search(r"^commands:\s+(\S+)", out, re.MULTILINE)
    if found is None:
        raise LabError(f"`{prefix}/bin/flux version` did not report a version")
    return found.group(1)


@dataclass(frozen=True)
class FluxSource:
    """A checked source: a local tarball, or None for the pinned release (downloaded)."""

    tarball: Path | None
    sha256: str


def check_source(source: str) -> FluxSource:
    """`--flux`'s value, checked before anything is built: one LabError if it is wrong."""
    if source == RELEASE:
        return FluxSource(None, PINNED_SHA256[f"flux-core-{RELEASE_VERSION}.tar.gz"])
    tarball = _checked_tarball(Path(source))
    return FluxSource(tarball, _checked_sha256(tarball))


def ensure_flux(
    source: str, root: Path = FLUX_ROOT, progress: Progress = lambda _: None
) -> FluxBuild:
    """Build (or reuse) Flux from `source`: a tarball path, or RELEASE (downloaded)."""
    started = time.monotonic()
    checked = check_source(source)
    prefix = prefix_for(checked.sha256, root)
    built = build_once(
        root, checked.sha256, lambda: _build_from(checked.tarball, checked.sha256, prefix, progress)
    )
    seconds = time.monotonic() - started
    return FluxBuild(prefix, checked.sha256, flux_version(prefix), built, seconds)


def build_once(root: Path, sha256: str, build: Callable[[], None]) -> bool:
    """Run `build` unless the prefix of `sha256` under `root` is built; True if it ran."""
    prefix = prefix_for(sha256, root)
    if is_built(prefix, sha256):
        return False
    with build_lock(root, sha256):
        if is_built(prefix, sha256):  # another `up` may have finished it
            return False
        build()
        return True


def _checked_tarball(path: Path) -> Path:
    return checked_tarball(path, "--flux ", "a flux-core release tarball", "flux-core/configure")


def checked_tarball(path: Path, prefix: str, what: str, member: str) -> Path:
    """`path`, absolute, if it is a .tar.gz of `what`: `member` ("project/file") is in it
    as project-<version>/file; else one LabError starting with `prefix`."""
    path = path.expanduser().absolute()
    if not path.is_file():
        raise LabError(f"{prefix}{path}: no such file ({what})")
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = archive.getnames()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise LabError(f"{prefix}{path}: not a .tar.gz archive ({err})") from None
    project, file = member.split("/")
    pattern = rf"{re.escape(project)}-[^/]+/{re.escape(file)}"
    if not any(re.fullmatch(pattern, name) for name in names):
        raise LabError(f"{prefix}{path}: not {what} (no {project}-*/{file})")
    return path


def _checked_sha256(tarball: Path) -> str:
    sha256 = sha256_of(tarball)
    pinned = PINNED_SHA256.get(tarball.name)
    if pinned is not None and sha256 != pinned:
        raise LabError(
            f"--flux {tarball}: sha256 {sha256} is not the pinned {pinned} of {tarball.name}"
        )
    return sha256


@contextlib.contextmanager
def build_lock(root: Path, sha256: str) -> Iterator[None]:
    _make_public_dir(root)
    with (root / f"{sha256[:16]}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for a concurrent build of the same tarball
        yield


def _make_public_dir(path: Path) -> None:
    """Root-owned and world-readable: every lab user runs Flux from here."""
    for directory in reversed((path, *path.parents)):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
            directory.chmod(0o755)  # not mkdir's mode: the umask would narrow it


def _build_from(tarball: Path | None, sha256: str, prefix: Path, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="pwgen-flux-") as scratch:
        work = Path(scratch)
        if tarball is None:
            progress(f"downloading flux-core {RELEASE_VERSION}")
            tarball = _download(RELEASE_URL, work / f"flux-core-{RELEASE_VERSION}.tar.gz")
            if sha256_of(tarball) != sha256:
                raise LabError(f"{RELEASE_URL}: the download's sha256 is not the pinned {sha256}")
        progress("installing Flux's build dependencies")
        ensure_packages(True, BUILD_PACKAGES)
        progress(f"building Flux into {prefix} (about 5 minutes)")
        shutil.rmtree(prefix, ignore_errors=True)  # a half-finished build
        _compile(tarball, work, prefix)
        (prefix / MARKER).write_text(f"{sha256}\n", encoding="utf-8")
        (prefix / MARKER).chmod(0o644)


def _download(url: str, target: Path) -> Path:
    import httpx  # here: `pwgen lab --help` reads this module's constants, fast

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=DOWNLOAD_TIMEOUT) as reply:
            reply.raise_for_status()
            with target.open("wb") as stream:
                for chunk in reply.iter_bytes():
                    stream.write(chunk)
    except httpx.HTTPError as err:
        raise LabError(
            f"cannot download {url} ({err}): give a local tarball with --flux PATH"
        ) from None
    return target


def _compile(tarball: Path, work: Path, prefix: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(work, filter="data")
    source = next(work.glob("flux-core-*/configure")).parent
    old_umask = os.umask(0o022)  # the install must be readable by every lab user
    try:
        steps = (
            ["./configure", f"--prefix={prefix}", "--disable-docs", "PYTHON=/usr/bin/python3"],
            ["make", "-j2"],
            ["make", "install"],
        )
        for argv in steps:
            run_step(source, argv)
    finally:
        os.umask(old_umask)


def run_step(directory: Path, argv: list[str], what: str = "Flux") -> None:
    """A build step of `what`; on failure, one line naming the step and its log."""
    log = directory / f"pwgen-{Path(argv[0]).name}.log"
    with log.open("w") as stream:
        done = _spawn(directory, argv, stream)
    if done != 0:
        kept = Path(tempfile.mkdtemp(prefix="pwgen-build-failed-")) / log.name
        shutil.copy(log, kept)
        raise LabError(f"building {what}: `{' '.join(argv)}` failed (exit {done}); log: {kept}")


def _spawn(directory: Path, argv: list[str], stream: IO[str]) -> int:
    try:
        return subprocess.run(
            argv,
            cwd=directory,
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=BUILD_TIMEOUT,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        return -1

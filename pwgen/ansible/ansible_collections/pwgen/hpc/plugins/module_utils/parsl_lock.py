# The controller's pinned environment: what every site must install, with hashes.
#
# Parsl's interchange refuses workers whose Parsl version or Python major.minor
# differ from the controller's, so the controller is the truth: the lock pins
# Parsl and its whole dependency closure at the versions installed here, plus a
# site's extra packages, and records the sha256 of every wheel. The lock's hash
# names the env on the site, so several pinned versions coexist. A Python without
# Parsl (plain ansible-playbook with only this collection) names the Parsl version
# instead, and pip resolves its closure for the site.
#
# The wheels are downloaded once on the controller, for the site's Python, CPU and
# glibc (sites often have no internet), into a cache directory:
#
#     <cache>/<spec hash>/wheels/*.whl
#     <cache>/<spec hash>/requirements.txt     name==version --hash=sha256:... per line
#     <cache>/<spec hash>/wheels.tar           the wheels as one file, pushed to sites
#     <cache>/<spec hash>/lock.json            what the playbooks read
#
# One copy of the code: the pwgen.hpc.parsl_lock module runs it on the controller, and
# pwgen imports it (pwgen/lock.py). Standard library and `packaging` only (ansible-core
# depends on it), so it runs in any Python that runs Ansible.
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

try:  # ansible-core depends on packaging; ansible-test's import check runs without it
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError as err:
    PACKAGING_IMPORT_ERROR: ImportError | None = err
else:
    PACKAGING_IMPORT_ERROR = None

ROOT_PACKAGE = "parsl"
# The oldest glibc pwgen assumes when a site's is unknown (RHEL/Rocky 7-era clusters).
DEFAULT_GLIBC = (2, 17)


class LockError(Exception):
    """The pinned environment cannot be built (a wheel is missing for the site, ...)."""


@dataclass(frozen=True)
class Target:
    """What a site runs: Python major.minor, CPU architecture and glibc version."""

    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch: str = "x86_64"
    glibc: tuple[int, int] = DEFAULT_GLIBC

    def pip_args(self) -> list[str]:
        """pip download options that select wheels this target can install."""
        major, minor = self.glibc
        platforms = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        platforms += [f"manylinux{alias}_{self.arch}" for alias in ("2014", "2010", "1")]
        platforms.append(f"linux_{self.arch}")
        cp = "cp" + self.python.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp"]
        for abi in (cp, "abi3", "none"):
            args += ["--abi", abi]
        for platform in platforms:
            args += ["--platform", platform]
        return args


@dataclass(frozen=True)
class Lock:
    """A built wheelhouse and the lock it satisfies."""

    hash: str
    python: str
    parsl: str
    directory: str
    requirements: str
    wheels: str
    tarball: str
    packages: dict[str, str]


def controller_pins(root: str = ROOT_PACKAGE) -> dict[str, str]:
    """`root` and its runtime dependency closure, at the versions installed here."""
    environment = {k: str(v) for k, v in default_environment().items()}
    pins: dict[str, str] = {}
    pending = [root]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in pins:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise LockError(f"{name} is not installed on the controller") from None
        pins[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or marker.evaluate({**environment, "extra": ""}):
                pending.append(requirement.name)
    return dict(sorted(pins.items()))


def spec_hash(target: Target, pins: dict[str, str], extra: Sequence[str]) -> str:
    """Names a wheelhouse by everything that decides its content."""
    spec = json.dumps([asdict(target), pins, sorted(extra)], sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def parse_glibc(text: str) -> tuple[int, int]:
    """`2.36` (or `2.36.1`) as (2, 36)."""
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    if not match:
        raise LockError(f"{text!r} is not a glibc version like 2.36")
    return int(match[1]), int(match[2])


def lock_pins(parsl_version: str = "") -> dict[str, str]:
    """What the lock pins before pip runs.

    The Parsl installed here with its closure when none is named or the named one is the
    installed one; else only the named Parsl, whose closure pip resolves for the site.
    """
    try:
        installed = importlib.metadata.version(ROOT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        installed = ""
    if parsl_version and parsl_version != installed:
        return {ROOT_PACKAGE: parsl_version}
    if not installed:
        raise LockError(
            f"{ROOT_PACKAGE} is not installed in {sys.executable}: name the Parsl version"
            " to pin (the parsl_env role's parsl_env_parsl_version), or install Parsl there"
        )
    return controller_pins()


def build_lock(
    cache: Path, target: Target, extra: Sequence[str] = (), parsl_version: str = ""
) -> Lock:
    """Download (once) the wheels for `target` and write the lock; returns it."""
    if PACKAGING_IMPORT_ERROR is not None:
        raise LockError(f"the lock needs the packaging library: {PACKAGING_IMPORT_ERROR}")
    pins = lock_pins(parsl_version)
    directory = cache / spec_hash(target, pins, extra)
    with _exclusive(cache):
        lock_json = directory / "lock.json"
        if not lock_json.exists():
            _download(directory, target, pins, extra)
            lock = _write_lock(directory, target, pins[ROOT_PACKAGE])
            lock_json.write_text(json.dumps(asdict(lock), indent=2) + "\n")
    return Lock(**json.loads(lock_json.read_text()))


@contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    """Several sites (Ansible forks) may ask for the same wheelhouse at once."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _download(directory: Path, target: Target, pins: dict[str, str], extra: Sequence[str]) -> None:
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    constraints = staging / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    command += ["--dest", str(staging / "wheels"), "--constraint", str(constraints)]
    command += target.pip_args()
    command += [f"{ROOT_PACKAGE}=={pins[ROOT_PACKAGE]}", *extra]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        reason = errors[-1] if errors else result.stderr.strip()[-300:]
        raise LockError(
            f"cannot download wheels for Python {target.python}/{target.arch}: {reason}"
        )
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _write_lock(directory: Path, target: Target, parsl_version: str) -> Lock:
    lines, packages = [], {}
    for wheel in sorted((directory / "wheels").glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
        packages[str(name)] = str(version)
    header = f"# pwgen lock: Python {target.python}, parsl {parsl_version}\n"
    text = header + "\n".join(lines) + "\n"
    (directory / "requirements.txt").write_text(text)
    tarball = directory / "wheels.tar"
    with tarfile.open(tarball, "w") as archive:  # wheels are compressed already
        archive.add(directory / "wheels", arcname="wheels")
    lock_hash = hashlib.sha256(f"python {target.python}\n{text}".encode()).hexdigest()[:12]
    return Lock(
        hash=lock_hash,
        python=target.python,
        parsl=parsl_version,
        directory=str(directory.resolve()),
        requirements=str((directory / "requirements.txt").resolve()),
        wheels=str((directory / "wheels").resolve()),
        tarball=str(tarball.resolve()),
        packages=packages,
    )

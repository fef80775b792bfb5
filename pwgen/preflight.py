"""Preflight: refuse a run whose sites would not accept the controller's workers.

Parsl's interchange kills the executor (`VersionMismatch`) when a worker's Parsl
version or Python major.minor differ from the controller's, which shows up mid-run,
minutes after the start. Preflight asks every remote site's pinned env, over the
site's ControlMaster and all sites at once, what it runs now (not what the facts
said at provisioning: an env may have been changed behind pwgen's back), and
refuses with a site x version table.

A site that does not answer at all is not a mismatch: `pwgen run` goes on without
it unless told to require every site (`require_all`).
"""

import importlib.util
import platform
import shlex
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pwgen_worker
from pwgen.errors import PwgenError
from pwgen.facts import read_facts
from pwgen.layout import StateLayout
from pwgen.sites import Site
from pwgen.ssh import SshSetup, prepare_ssh

# Parsl, Python major.minor, and pwgen's worker helpers ("-": missing) of the site env.
# Parsl's version is read from the module that sets `parsl.__version__` (parsl/version.py),
# without importing parsl (0.7 s on the site, the better part of the preflight): the
# interchange compares exactly that value. pwgen_worker is a few lines of stdlib.
_PROBE = """\
import importlib.util, os, sys
spec = importlib.util.find_spec("parsl")
if spec is None or not spec.origin:
    sys.exit("no parsl")
names = {}
with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as source:
    exec(source.read(), names)
try:
    import pwgen_worker
    helpers = pwgen_worker.__version__
except ImportError:
    helpers = "-"
print(names["VERSION"], "%d.%d" % sys.version_info[:2], helpers)
"""
PROBE_TIMEOUT = 30


class PreflightError(PwgenError):
    """A site is not ready for this controller; `rows` holds the version table."""

    def __init__(self, message: str, rows: Sequence["SiteVersions"] = ()) -> None:
        super().__init__(message)
        self.rows = list(rows)


@dataclass(frozen=True)
class SiteVersions:
    """What one site runs, against what the controller runs."""

    label: str
    parsl: str
    python: str
    expected_parsl: str
    expected_python: str
    #: Why the site did not answer (ssh's own message), "" when it did.
    unreachable: str = ""
    #: pwgen_worker's version in the env ("-": missing); bash walltime kills need it.
    worker_helpers: str = pwgen_worker.__version__

    @property
    def ok(self) -> bool:
        return (self.parsl, self.python, self.worker_helpers) == (
            self.expected_parsl,
            self.expected_python,
            pwgen_worker.__version__,
        )


def controller_versions() -> tuple[str, str]:
    """This Parsl's version and Python's major.minor; Parsl's read as the sites' is (its
    version.py), so a preflight can run while another thread imports Parsl."""
    spec = importlib.util.find_spec("parsl")
    if spec is None or not spec.origin:
        raise PreflightError("Parsl is not installed here")
    names: dict[str, Any] = {}
    exec(Path(spec.origin).with_name("version.py").read_text(encoding="utf-8"), names)
    return str(names["VERSION"]), ".".join(platform.python_version_tuple()[:2])


@dataclass(frozen=True)
class Preflight:
    """The remote sites' ssh setup and versions, and how long getting them took."""

    ssh: SshSetup | None
    versions: list["SiteVersions"]
    seconds: float


def start_preflight(
    sites: Sequence[Site], state_dir: Path, known_hosts: Sequence[Path], require_all: bool
) -> "Future[Preflight]":
    """`prepare_ssh` and `check_versions` of the remote sites, in a thread: they mostly
    wait on ssh, so they cost nothing while `pwgen run` imports Parsl. The future raises
    what they raised; masters it started are stopped then."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pwgen-preflight")
    future = pool.submit(_preflight, sites, state_dir, known_hosts, require_all)
    pool.shutdown(wait=False)
    return future


def stop_preflight_masters(preflight: "Future[Preflight]", sites: Sequence[Site]) -> None:
    """Once the preflight is over, stop the masters it started (none if it failed: it
    stopped its own)."""
    try:
        ssh = preflight.result().ssh
    except BaseException:
        return
    if ssh is not None:
        for site in sites:
            if not site.is_local:
                ssh.stop_master(site.label)


def _preflight(
    sites: Sequence[Site], state_dir: Path, known_hosts: Sequence[Path], require_all: bool
) -> Preflight:
    started = time.monotonic()
    remote = [site for site in sites if not site.is_local]
    if not remote:
        return Preflight(None, [], 0.0)
    ssh = prepare_ssh(remote, state_dir, known_hosts)
    try:
        versions = check_versions(remote, state_dir, ssh, require_all=require_all)
    except BaseException:
        for site in remote:
            ssh.stop_master(site.label)
        raise
    return Preflight(ssh, versions, time.monotonic() - started)


def check_versions(
    sites: Sequence[Site], state_dir: Path, ssh: SshSetup, *, require_all: bool = True
) -> list[SiteVersions]:
    """Probe every remote site; raise PreflightError (with the table) on any mismatch.

    An unreachable site is a mismatch only with `require_all`; otherwise its row (with
    `unreachable` set) is returned for the caller to leave the site out.
    """
    remote = [site for site in sites if not site.is_local]
    pythons = {site.label: _env_python(state_dir, site.label) for site in remote}
    expected = controller_versions()
    with ThreadPoolExecutor(max_workers=max(1, len(remote))) as pool:
        rows = list(pool.map(lambda s: _probe(s.label, pythons[s.label], ssh, expected), remote))
    unreachable = [row for row in rows if row.unreachable]
    if unreachable and require_all:
        # No version table: there are no versions to compare.
        raise PreflightError(f"unreachable site(s): {unreachable_reasons(rows)}")
    bad = [row for row in rows if not row.ok and not row.unreachable]
    if bad:
        raise PreflightError(_mismatch_message(bad, expected), rows)
    return rows


def _mismatch_message(bad: Sequence[SiteVersions], expected: tuple[str, str]) -> str:
    versions = [row.label for row in bad if (row.parsl, row.python) != expected]
    helpers = [row.label for row in bad if row.worker_helpers != pwgen_worker.__version__]
    parts = []
    if versions:
        parts.append(
            f"site(s) {', '.join(versions)} do not run the controller's Parsl {expected[0]} "
            f"on Python {expected[1]}"
        )
    if helpers:
        parts.append(f"site(s) {', '.join(helpers)} lack pwgen_worker {pwgen_worker.__version__}")
    return "; ".join(parts) + ": re-provision with `pwgen provision`"


def unreachable_reasons(rows: Sequence[SiteVersions]) -> str:
    """`site: why; site: why` for the unreachable rows."""
    return "; ".join(f"{row.label}: {row.unreachable}" for row in rows if row.unreachable)


def _env_python(state_dir: Path, label: str) -> str:
    facts = read_facts(StateLayout(state_dir).facts_dir, label)
    python = facts.python.path if facts.python else None
    if not python:
        raise PreflightError(f"site {label!r}: its facts name no Python env; run `pwgen provision`")
    return python


def _probe(label: str, python: str, ssh: SshSetup, expected: tuple[str, str]) -> SiteVersions:
    try:
        done = subprocess.run(
            ssh.argv(label, shlex.join([python, "-c", _PROBE])),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        why = f"no answer within {PROBE_TIMEOUT} s"
        return SiteVersions(label, "no answer", "no answer", *expected, unreachable=why)
    words = done.stdout.split()
    if done.returncode == 255:  # ssh itself failed
        lines = done.stderr.strip().splitlines()
        why = lines[-1] if lines else "ssh failed"
        return SiteVersions(label, "unreachable", "?", *expected, unreachable=why)
    if done.returncode != 0 or len(words) != 3:
        return SiteVersions(label, "no parsl", "?", *expected)
    return SiteVersions(label, words[0], words[1], *expected, worker_helpers=words[2])

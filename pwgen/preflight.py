"""Preflight: refuse a run whose sites would not accept the controller's workers.

Parsl's interchange kills the executor (`VersionMismatch`) when a worker's Parsl
version or Python major.minor differ from the controller's, which shows up mid-run,
minutes after the start. Preflight asks every remote site's pinned env, over the
site's ControlMaster and all sites at once, what it runs now (not what the facts
said at provisioning: an env may have been changed behind pwgen's back), and
refuses with a site x version table.
"""

import platform
import shlex
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pwgen.errors import PwgenError
from pwgen.facts import read_facts
from pwgen.sites import Site
from pwgen.ssh import SshSetup

_PROBE = "import sys, parsl; print(parsl.__version__, '%d.%d' % sys.version_info[:2])"
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

    @property
    def ok(self) -> bool:
        return (self.parsl, self.python) == (self.expected_parsl, self.expected_python)


def controller_versions() -> tuple[str, str]:
    import parsl

    return parsl.__version__, ".".join(platform.python_version_tuple()[:2])


def check_versions(sites: Sequence[Site], state_dir: Path, ssh: SshSetup) -> list[SiteVersions]:
    """Probe every remote site; raise PreflightError (with the table) on any mismatch."""
    remote = [site for site in sites if not site.is_local]
    pythons = {site.label: _env_python(state_dir, site.label) for site in remote}
    expected = controller_versions()
    with ThreadPoolExecutor(max_workers=max(1, len(remote))) as pool:
        rows = list(pool.map(lambda s: _probe(s.label, pythons[s.label], ssh, expected), remote))
    bad = [row for row in rows if not row.ok]
    if bad:
        names = ", ".join(row.label for row in bad)
        raise PreflightError(
            f"site(s) {names} do not run the controller's Parsl {expected[0]} on Python "
            f"{expected[1]}: re-provision with `pwgen provision`",
            rows,
        )
    return rows


def _env_python(state_dir: Path, label: str) -> str:
    facts = read_facts(state_dir / "facts", label)
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
        return SiteVersions(label, "no answer", "no answer", *expected)
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2:
        reason = "unreachable" if done.returncode == 255 else "no parsl"
        return SiteVersions(label, reason, "?", *expected)
    return SiteVersions(label, words[0], words[1], *expected)

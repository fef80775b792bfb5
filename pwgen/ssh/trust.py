"""Pinned host keys: `.pwgen/ssh/known_hosts`, merged from trusted files, checked per site.

Keys come from a `known_hosts` next to the sites file (the lab writes one), from files
the user names, or — only with `--accept-new-host-keys` — from the first contact.
"""

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from pwgen.fileio import atomic_write
from pwgen.sites import Site
from pwgen.ssh.errors import SshError


def merge_known_hosts(target: Path, sources: Iterable[Path]) -> None:
    """Add the lines of `sources` that `target` lacks (never drops a key pwgen had)."""
    lines = _read_lines(target) if target.exists() else []
    for source in sources:
        if not source.is_file():
            raise SshError(f"{source}: known_hosts file not found")
        lines += [line for line in _read_lines(source) if line not in lines]
    atomic_write(target, "".join(f"{line}\n" for line in lines), mode=0o600)


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def require_pinned_keys(sites: Sequence[Site], known_hosts: Path) -> None:
    """Refuse to contact a site whose host key pwgen does not know yet."""
    for site in sites:
        host = site.host if site.port == 22 else f"[{site.host}]:{site.port}"
        found = subprocess.run(
            ["ssh-keygen", "-F", str(host), "-f", str(known_hosts)],
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            raise SshError(
                f"site {site.label!r}: no pinned host key for {host}; add it with "
                "--known-hosts FILE, or trust the first contact with --accept-new-host-keys"
            )


def known_hosts_near(sites_file: Path) -> list[Path]:
    """A `known_hosts` next to the sites file (as the lab writes it) is trusted."""
    candidate = sites_file.parent / "known_hosts"
    return [candidate] if candidate.is_file() else []

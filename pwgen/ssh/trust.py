"""Pinned host keys: `.pwgen/ssh/known_hosts`, merged from trusted files, checked per site.

Keys come from files the user names (`--known-hosts`), from a `known_hosts` next to the
sites file when the user trusts it (see `adjacent_known_hosts`), or — only with
`--accept-new-host-keys` — from the first contact.

A trusted file speaks for the hosts it names: their lines replace what pwgen had
pinned for them (a rotated key stops being trusted), and other hosts keep theirs.
`@cert-authority` lines are refused: one would trust every host key a CA signs, for
whatever host pattern the line says.
"""

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pwgen.fileio import atomic_write
from pwgen.sites import Site
from pwgen.ssh.errors import SshError
from pwgen.userfiles import read_user_text

KNOWN_HOSTS = "known_hosts"
#: What `pwgen lab` keeps next to the sites file and known_hosts it writes.
LAB_STATE = "lab.json"


def merge_known_hosts(target: Path, sources: Iterable[Path]) -> None:
    """Pin the keys of `sources` in `target`: each replaces the lines of the hosts it names."""
    lines = _read_lines(target) if target.exists() else []
    for source in sources:
        given = _read_lines(source)
        for number, line in enumerate(given, start=1):
            if line.startswith("@cert-authority"):
                raise SshError(
                    f"{source}: line {number}: @cert-authority lines are not accepted "
                    "(pwgen pins each host's own key)"
                )
        named = {host for line in given for host in _hosts(line)}
        kept = [line for line in lines if not _hosts(line) & named]
        lines = kept + [line for line in given if line not in kept]
    atomic_write(target, "".join(f"{line}\n" for line in lines), mode=0o600)


def _hosts(line: str) -> set[str]:
    """The host patterns a known_hosts line is for (`@revoked` lines included)."""
    fields = line.split()
    if fields and fields[0].startswith("@"):
        fields = fields[1:]
    return set(fields[0].split(",")) if fields else set()


def _read_lines(path: Path) -> list[str]:
    text = read_user_text(path, "known_hosts file", SshError)
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
                f"site {site.label!r}: no pinned host key for {host}; name a known_hosts "
                "file with --known-hosts FILE, or trust the first contact with "
                "--accept-new-host-keys"
            )


def adjacent_known_hosts(
    sites_file: Path, pinned: Path, confirm: Callable[[Path], bool] | None = None
) -> list[Path]:
    """The `known_hosts` next to the sites file, when the user trusts it.

    It is trusted when `pwgen lab` wrote it (the lab's state beside it, all of it this
    user's and writable by nobody else), or when the user says so at a prompt (`confirm`,
    asked only on a terminal, and only when it holds a key that `pinned`, pwgen's own
    known_hosts, lacks). Otherwise it is not used: name it with `--known-hosts`.
    """
    candidate = sites_file.parent / KNOWN_HOSTS
    if not candidate.is_file():
        return []
    if _written_by_lab(sites_file.parent):
        return [candidate]
    if _already_pinned(candidate, pinned):
        return []  # confirmed before: nothing it could add
    if confirm is not None and sys.stdin.isatty() and confirm(candidate):
        return [candidate]
    return []


def _already_pinned(candidate: Path, pinned: Path) -> bool:
    if not pinned.is_file():
        return False
    return set(_read_lines(candidate)) <= set(_read_lines(pinned))


def _written_by_lab(directory: Path) -> bool:
    return all(
        _private_to_user(path)
        for path in (directory, directory / LAB_STATE, directory / KNOWN_HOSTS)
    )


def _private_to_user(path: Path) -> bool:
    """Owned by this user, not a symlink, and writable by nobody else."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        not stat.S_ISLNK(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )

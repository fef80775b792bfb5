"""The controller's pinned environment (the Parsl lock), as pwgen uses it.

The code lives once, in the pwgen.hpc collection's module_utils (standard library and
`packaging` only, so the collection's `pwgen.hpc.parsl_lock` module runs it in an
Ansible without pwgen); this module imports it and adds pwgen's error type and a CLI:
`python -m pwgen.lock --cache DIR [--extra PKG]...` builds a lock and prints lock.json.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils import parsl_lock
from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils.parsl_lock import (
    DEFAULT_GLIBC,
    Lock,
    Target,
    controller_pins,
    spec_hash,
)
from pwgen.errors import PwgenError

__all__ = ["DEFAULT_GLIBC", "Lock", "LockError", "Target", "build_lock", "controller_pins"]
__all__ += ["spec_hash"]


class LockError(PwgenError):
    """The pinned environment cannot be built (a wheel is missing for the site, ...)."""


def build_lock(
    cache: Path, target: Target, extra: Sequence[str] = (), parsl_version: str = ""
) -> Lock:
    """Download (once) the wheels for `target` and write the lock; returns it."""
    try:
        return parsl_lock.build_lock(cache, target, extra, parsl_version)
    except parsl_lock.LockError as err:
        raise LockError(str(err)) from None


def _glibc(text: str) -> tuple[int, int]:
    try:
        return parsl_lock.parse_glibc(text)
    except parsl_lock.LockError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pwgen.lock", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cache", type=Path, required=True, help="wheelhouse cache directory")
    parser.add_argument("--python", default=Target.python, help="site Python major.minor")
    parser.add_argument("--arch", default="x86_64", help="site CPU architecture")
    parser.add_argument("--glibc", type=_glibc, default=DEFAULT_GLIBC, help="site glibc, e.g. 2.36")
    parser.add_argument("--extra", action="append", default=[], help="extra package (repeatable)")
    parser.add_argument("--parsl-version", default="", help="Parsl to pin (default: installed)")
    args = parser.parse_args(argv)
    target = Target(args.python, args.arch, args.glibc)
    try:
        lock = build_lock(args.cache, target, args.extra, args.parsl_version)
    except PwgenError as err:
        print(f"pwgen.lock: error: {err}", file=sys.stderr)
        return err.exit_code
    print(json.dumps(asdict(lock)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

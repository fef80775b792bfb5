#!/usr/bin/python
# Copyright: pwgen contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Ansible module: build (once, cached) the pinned Parsl lock for one site target."""

from __future__ import annotations

DOCUMENTATION = r"""
module: parsl_lock
short_description: The pinned Parsl environment (lock and wheelhouse) for a site's platform
description:
  - Runs on the controller (O(ignore:delegate_to=localhost)). Pins Parsl and its whole dependency
    closure, plus extra packages, downloads the wheels for the site's Python, CPU and glibc
    into a cache directory (once per distinct target) and returns the lock the
    C(pwgen.hpc.parsl_env) role installs.
  - With Parsl installed in the Python that runs the module, the lock pins that Parsl and
    the installed versions of its closure (the controller is the truth, as Parsl refuses
    workers whose Parsl version differs). Without it, or when O(parsl_version) names
    another version, pip resolves the closure of that version for the site.
  - Needs only the standard library, C(packaging) and C(pip) in that Python; the wheels
    come from pip's configured index.
options:
  cache:
    description: Controller directory that keeps one wheelhouse per target.
    type: path
    required: true
  python:
    description: The site's Python major.minor. Default is the module's own Python.
    type: str
    default: ""
  arch:
    description: The site's CPU architecture.
    type: str
    default: x86_64
  glibc:
    description: The site's glibc version (C(2.36)); its wheels are manylinux wheels.
    type: str
    default: "2.17"
  extra:
    description: Extra packages (pip requirement specifiers) added to the lock.
    type: list
    elements: str
    default: []
  parsl_version:
    description:
      - The Parsl version to pin. Empty means the one installed in the module's Python,
        which must then have Parsl.
    type: str
    default: ""
attributes:
  check_mode:
    description: Can run in check mode.
    support: full
    details: The lock is built in check mode too; it changes only the controller's cache.
  diff_mode:
    description: Returns no diff.
    support: none
author:
  - pwgen contributors (@pwgen)
"""

EXAMPLES = r"""
- name: Build the lock for a Python 3.11 x86_64 site
  pwgen.hpc.parsl_lock:
    cache: /home/me/.pwgen/wheelhouse
    python: "3.11"
    glibc: "2.36"
  delegate_to: localhost
  register: __parsl_lock_result
"""

RETURN = r"""
lock:
  description: The lock and where its files are on the controller.
  returned: success
  type: dict
  contains:
    hash:
      description: 12 hex digits that name the env on the site.
      type: str
    python:
      description: The site Python major.minor the lock is for.
      type: str
    parsl:
      description: The pinned Parsl version.
      type: str
    directory:
      description: The wheelhouse directory.
      type: str
    requirements:
      description: requirements.txt with a sha256 per wheel.
      type: str
    wheels:
      description: The directory of the wheels.
      type: str
    tarball:
      description: The wheels as one tar file, pushed to sites.
      type: str
    packages:
      description: Name to version of every pinned package.
      type: dict
"""

import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.pwgen.hpc.plugins.module_utils.parsl_lock import (  # noqa: E402
    LockError,
    Target,
    build_lock,
    parse_glibc,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "cache": {"type": "path", "required": True},
            "python": {"type": "str", "default": ""},
            "arch": {"type": "str", "default": "x86_64"},
            "glibc": {"type": "str", "default": "2.17"},
            "extra": {"type": "list", "elements": "str", "default": []},
            "parsl_version": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    python = params["python"] or "{}.{}".format(*sys.version_info[:2])
    try:
        target = Target(python, params["arch"], parse_glibc(params["glibc"]))
        lock = build_lock(Path(params["cache"]), target, params["extra"], params["parsl_version"])
    except LockError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, lock=asdict(lock))


if __name__ == "__main__":
    main()

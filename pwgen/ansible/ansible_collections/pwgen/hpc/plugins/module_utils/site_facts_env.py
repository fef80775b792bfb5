"""Site facts: the pinned env's Python, Parsl, worker pool, relay and worker helpers.
Standard library only: it runs on the site with the module."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from typing import Any

# Runs a command on the site: argv -> (rc, stdout, stderr) (the module's run_command).
Runner = Callable[[list[str]], tuple[int, str, str]]

# Runs inside the env's Python: its version, the installed Parsl's (from its package
# metadata, and the package found on sys.path) and where pwgen_worker is, as one JSON
# line. Importing Parsl costs half a second of CPU per site on every provision; a new env
# is import-checked by pwgen.hpc.parsl_env, and `pwgen run` imports Parsl live (preflight).
# Without the current directory on sys.path (`-c` puts it first), like a worker.
_PYTHON_PROBE = (
    "import importlib.metadata, importlib.util, json, platform, sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "info = {'version': platform.python_version(), 'parsl': None, 'error': None}\n"
    "try:\n"
    "    if importlib.util.find_spec('parsl') is None:\n"
    "        raise ImportError('no parsl package on sys.path')\n"
    "    info['parsl'] = importlib.metadata.version('parsl')\n"
    "except Exception as err:\n"
    "    info['error'] = f'{type(err).__name__}: {err}'\n"
    "spec = importlib.util.find_spec('pwgen_worker')\n"
    "info['worker_helpers'] = spec.origin if spec else None\n"
    "spec = importlib.util.find_spec('flux')\n"
    "info['flux'] = spec.origin if spec else None\n"
    "print(json.dumps(info))\n"
)
_ENV_FACTS = ("python", "parsl_version", "worker_pool", "relay", "worker_helpers")

# ------------------------------------------------------------------ the env


def env_facts(
    run: Runner, env_path: str, warn: Callable[[str], None], probed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """python, parsl_version, worker_pool, relay and worker_helpers of the pinned env (None
    when unknown). `probed` gets what the env's Python reported (`flux`: where it finds
    Flux's bindings, for site_facts_flux)."""
    facts: dict[str, Any] = dict.fromkeys(_ENV_FACTS)
    if not env_path:
        return facts
    bin_dir = os.path.join(env_path, "bin")
    python = os.path.join(bin_dir, "python")
    if not os.access(python, os.X_OK):
        warn(f"env {env_path}: no {python} (not provisioned yet?)")
        return facts
    rc, out, err = run([python, "-c", _PYTHON_PROBE])
    try:
        info = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        warn(f"{python} failed (exit {rc}): {' '.join(err.split())[-300:]}")
        return facts
    if probed is not None:
        probed.update(info)
    facts["python"] = {"path": python, "version": info["version"]}
    facts["parsl_version"] = info["parsl"]
    facts["worker_helpers"] = info.get("worker_helpers")
    if info["error"]:
        warn(f"{python} finds no parsl: {info['error']}")
    for key, name in (("worker_pool", "process_worker_pool.py"), ("relay", "pwgen-relay")):
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            facts[key] = path
        elif key == "worker_pool":
            warn(f"env {env_path}: no executable {path}")
    return facts


def env_mismatch(
    facts: dict[str, Any], env_path: str, expect_parsl: str, expect_python: str
) -> str | None:
    """Why the env does not run the expected Parsl and Python major.minor (None if it does).

    `facts` are env_facts' result for `env_path`; an empty expectation is not checked.
    """
    if not (expect_parsl or expect_python):
        return None
    python = facts["python"]
    if python is None:
        found = f"{env_path}/bin/python does not run"
    elif facts["parsl_version"] is None:
        found = f"{python['path']} finds no parsl"
    else:
        major_minor = ".".join(python["version"].split(".")[:2])
        if expect_parsl in ("", facts["parsl_version"]) and expect_python in ("", major_minor):
            return None
        found = f"{python['path']} reports Parsl {facts['parsl_version']} on Python {major_minor}"
    wanted = " on ".join(
        part
        for part in (
            f"Parsl {expect_parsl}" if expect_parsl else "",
            f"Python {expect_python}" if expect_python else "",
        )
        if part
    )
    return (
        f"{found}, but the env must run {wanted} (the pinned lock). Remove the env "
        f"(pwgen.hpc.purge with parsl_env_purge_hashes=[{os.path.basename(env_path)}]) "
        "and provision again."
    )


def glibc_version() -> str | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        text = ""
    if text.startswith("glibc "):
        return text.split()[1]
    lib, version = platform.libc_ver()
    return version if lib == "glibc" and version else None


def expand(path: str) -> str:
    return os.path.normpath(os.path.expandvars(os.path.expanduser(path))) if path else ""

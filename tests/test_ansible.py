"""The Ansible side stays clean and working: ansible-lint and every Molecule scenario.

`ansible-lint` (profile production, `.config/ansible-lint.yml`) checks the pwgen.hpc
collection (pwgen/ansible/) and molecule/. `molecule test --all` runs each scenario under
molecule/ (one per role plus `provision`, see molecule/README.md) against pwgen
lab sites that its create/destroy playbooks bring up and take down; it needs root
and the lab's Debian packages, like the other `lab` tests.

Both run as subprocesses from the repository root with this venv's bin/ first on
PATH (Molecule calls ansible-playbook and ansible-config by name).
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_tool
from lab_helpers import lab_namespaces, molecule_labs_down, skip_reason

from pwgen.assets import ansible_dir

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(command: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tool(command, REPO, timeout, **env)


def test_ansible_lint_is_clean() -> None:
    result = _run(
        [str(BIN / "ansible-lint")],
        timeout=600,
        ANSIBLE_CONFIG=str(ansible_dir() / "ansible.cfg"),
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]


@pytest.mark.lab
def test_molecule_all_scenarios_pass() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(f"molecule scenarios run on the pwgen lab: {reason}")
    # A run killed mid-scenario (CI stopped, a session ended) leaves its lab up.
    left = molecule_labs_down()
    assert not left, f"a Molecule lab is up and has no state to take it down: {left}"
    started = time.monotonic()
    # flux_install (a real Flux build) runs in tests/test_flux_role.py, with the tarball.
    command = [str(BIN / "molecule"), "test", "--all", "--exclude", "flux_install"]
    result = _run(command, timeout=1200)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert re.search(r"Molecule executed \d+ scenarios? \(\d+ successful\)", output), output[-3000:]
    print(f"molecule test --all: {elapsed:.0f} s")
    # destroy took every lab down: no namespace, no daemon left behind.
    assert not lab_namespaces("pwmc")

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
from lab_helpers import skip_reason

from pwgen.assets import ansible_dir

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The lab prefix of the scenarios (PWGEN_MOLECULE_LAB_NAME in .config/molecule/config.yml).
MOLECULE_LAB_PREFIX = re.compile(r"^pwmc-")


def _run(command: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tool(command, REPO, timeout, **env)


def _lab_namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [name for name in names if MOLECULE_LAB_PREFIX.match(name)]


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
    assert not _lab_namespaces(), "a Molecule lab is already up: `molecule destroy --all`"
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
    assert not _lab_namespaces()

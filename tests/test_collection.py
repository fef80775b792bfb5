"""The pwgen.hpc Ansible collection: one source of truth for the wheel and the Galaxy tarball.

Fast: `ansible-galaxy collection build` of the package's collection gives a tarball with
every file of it (and pwgen's version); installed into a scratch collections path, its
modules, inventory plugin and roles are documented from there (`ansible-doc`); the
package's ansible.cfg finds the collection from any directory; the wheel carries every
file; `ansible-test sanity` passes; the lock module's choice between the installed Parsl
and a named one.

Lab (marked `lab`, root; prefix pwcl, 10.241.0.0/16, one site): a playbook in a scratch
directory, naming only FQCNs, run by an ansible-playbook whose Python has neither pwgen
nor Parsl (a venv with only ansible-core and packaging), provisions the site with
`pwgen.hpc.parsl_env` + `pwgen.hpc.site_facts` from the installed tarball; a second run
changes nothing.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import parsl
import pytest
import yaml
from helpers import BIN, REPO, run_pwgen, run_tool
from lab_helpers import running_lab

from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils import parsl_lock
from pwgen.assets import ansible_dir, collection_dir
from pwgen.lab.state import LabState

PREFIX, SUBNET = "pwcl", "10.241.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-collection-lab"
# Files of the collection that are not content (left by Python or Ansible runs).
NOT_CONTENT = re.compile(r"(^|/)__pycache__/|\.pyc$")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = run_tool(argv, cwd, timeout, **env)
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _content(directory: Path) -> set[str]:
    """The collection's files, relative to its root."""
    files = {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
    return {name for name in files if not NOT_CONTENT.search(name)}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("galaxy-build")
    _run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(collection_dir())],
        cwd=out,
        env={"ANSIBLE_HOME": str(out / ".ansible")},
    )
    (built,) = out.glob("pwgen-hpc-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch collections path holding the built tarball, installed offline."""
    collections = tmp_path_factory.mktemp("collections")
    _run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            "-p",
            str(collections),
            str(tarball),
        ],
        cwd=collections,
        env={"ANSIBLE_HOME": str(collections / ".ansible")},
    )
    assert (collections / "ansible_collections" / "pwgen" / "hpc" / "MANIFEST.json").is_file()
    return collections


def test_tarball_holds_the_collection_at_pwgens_version(tarball: Path) -> None:
    version = importlib.metadata.version("pwgen")
    galaxy = yaml.safe_load((collection_dir() / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"], galaxy["version"]) == ("pwgen", "hpc", version)
    assert tarball.name == f"pwgen-hpc-{version}.tar.gz"
    with tarfile.open(tarball) as archive:
        members = {member.name for member in archive.getmembers() if member.isfile()}
    assert not [name for name in members if NOT_CONTENT.search(name)]
    # galaxy.yml becomes MANIFEST.json and FILES.json.
    assert members - {"MANIFEST.json", "FILES.json"} == _content(collection_dir()) - {"galaxy.yml"}


def test_installed_collection_is_documented_from_a_scratch_path(
    installed: Path, tmp_path: Path
) -> None:
    root = installed / "ansible_collections" / "pwgen" / "hpc"
    env = {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_HOME": str(tmp_path / "home")}
    doc = [str(BIN / "ansible-doc")]
    for kind, name, says in [
        ("module", "pwgen.hpc.site_facts", "partitions"),
        ("module", "pwgen.hpc.parsl_lock", "parsl_version"),
        ("inventory", "pwgen.hpc.pw", "Parallel Works"),
        ("role", "pwgen.hpc.parsl_env", "parsl_env_parsl_version"),
    ]:
        shown = _run([*doc, "-t", kind, name], cwd=tmp_path, env=env)
        assert says in shown, shown[:2000]
        assert str(root) in shown, f"{name} not read from the installed collection"


def test_package_ansible_cfg_finds_the_collection_from_anywhere(tmp_path: Path) -> None:
    shown = _run(
        [str(BIN / "ansible-doc"), "-t", "role", "pwgen.hpc.site_facts"],
        cwd=tmp_path,
        env={
            "ANSIBLE_CONFIG": str(ansible_dir() / "ansible.cfg"),
            "ANSIBLE_HOME": str(tmp_path / "home"),
        },
    )
    assert str(collection_dir()) in shown


def test_wheel_carries_every_collection_file(tmp_path: Path) -> None:
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=REPO,
        env={},
        timeout=600,
    )
    (wheel,) = tmp_path.glob("pwgen-*.whl")
    prefix = "pwgen/ansible/ansible_collections/pwgen/hpc/"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "pwgen/ansible/ansible.cfg" in names
    assert {name.removeprefix(prefix) for name in names if name.startswith(prefix)} == _content(
        collection_dir()
    )


# ansible-test keeps its venvs under ~/.ansible/test: a home of its own, kept across runs.
ANSIBLE_TEST_HOME = Path(tempfile.gettempdir()) / "pwgen-test-ansible-test-home"
# ansible-test fetches a pip bootstrap script from its own CI host, which is unreachable
# here: this stand-in installs the interpreter's bundled pip instead (the sanity venvs'
# requirements then come from the package index as usual).
PIP_BOOTSTRAP = """\
import ensurepip
import sys

sys.exit(ensurepip._main(["--upgrade", "--default-pip"]))
"""


def _offline_pip_bootstrap() -> None:
    spec = importlib.util.find_spec("ansible_test")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).parent / "_internal" / "python_requirements.py"
    match = re.search(r"pip='([0-9.]+)'", source.read_text())
    assert match, f"no pip version in {source}"
    cache = ANSIBLE_TEST_HOME / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    script = cache / f"get_pip_{match[1].replace('.', '_')}.py"
    if not script.exists():
        script.write_text(PIP_BOOTSTRAP)


def test_ansible_test_sanity_passes(tmp_path: Path) -> None:
    _offline_pip_bootstrap()
    copy = tmp_path / "ansible_collections" / "pwgen" / "hpc"  # where ansible-test wants it
    shutil.copytree(collection_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    python = ".".join(map(str, sys.version_info[:2]))
    shown = _run(
        [str(BIN / "ansible-test"), "sanity", "--python", python],
        cwd=copy,
        env={"HOME": str(ANSIBLE_TEST_HOME)},
        timeout=900,
    )
    assert "FATAL" not in shown


def test_lock_pins_the_installed_parsl_or_the_named_one(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = parsl_lock.lock_pins()
    assert installed["parsl"] == parsl.__version__ and len(installed) > 1  # and its closure
    assert parsl_lock.lock_pins(parsl.__version__) == installed
    assert parsl_lock.lock_pins("2025.1.1") == {"parsl": "2025.1.1"}  # pip resolves the rest

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(parsl_lock.LockError, match="parsl_env_parsl_version"):
        parsl_lock.lock_pins()
    assert parsl_lock.lock_pins("2025.1.1") == {"parsl": "2025.1.1"}


# --- lab: the collection alone, in an Ansible without pwgen or Parsl ---------------------

SITE_PLAYBOOK = """\
- name: Provision a site with only the pwgen.hpc collection
  hosts: sites
  gather_facts: false
  roles:
    - role: pwgen.hpc.parsl_env
    - role: pwgen.hpc.site_facts
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=1, compute_nodes=1) as state:
        yield state


@pytest.fixture(scope="module")
def bare_ansible() -> Path:
    """bin/ of a venv with only ansible-core (this one's version) and packaging; kept across
    runs (it takes a minute to install)."""
    version = importlib.metadata.version("ansible-core")
    venv = Path(tempfile.gettempdir()) / f"pwgen-test-bare-ansible-{version}"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "ansible-playbook").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"ansible-core=={version}",
                "packaging",
            ],
            check=True,
            timeout=600,
        )
    for module in ("pwgen", "parsl"):
        found = subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{venv} can import {module}"
    return venv / "bin"


def _play(bare: Path, installed: Path, scratch: Path) -> str:
    known_hosts = {"ansible_ssh_common_args": f"-o UserKnownHostsFile={LAB_DIR}/known_hosts"}
    extra = {
        "site_facts_controller_dir": str(scratch / "facts"),
        "parsl_env_cache": str(scratch / "wheelhouse"),
        # The Parsl of the controller that will run the workflow: Ansible's Python has none.
        "parsl_env_parsl_version": parsl.__version__,
    }
    argv = [str(bare / "ansible-playbook"), "-i", "inventory.yml", "site.yml"]
    argv += ["-e", json.dumps(known_hosts), "-e", json.dumps(extra)]
    env = {
        "PATH": f"{bare}{os.pathsep}/usr/bin:/bin",
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_HOME": str(scratch / ".ansible"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",
    }
    return _run(argv, cwd=scratch, env=env, timeout=900)


@pytest.mark.lab
def test_collection_alone_provisions_a_site_and_is_idempotent(
    lab: LabState, bare_ansible: Path, installed: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "sysadmin"  # outside the checkout, no ansible.cfg
    scratch.mkdir()
    (scratch / "site.yml").write_text(SITE_PLAYBOOK)
    inventory = run_pwgen(
        "inventory", "--from", str(LAB_DIR / "sites.yaml"), "-o", "inventory.yml", cwd=scratch
    )
    assert inventory.returncode == 0, inventory.stderr

    _play(bare_ansible, installed, scratch)
    (site,) = lab.sites
    facts = json.loads((scratch / "facts" / f"{site.label}.json").read_text())
    assert facts["parsl_version"] == parsl.__version__
    python = ".".join(map(str, sys.version_info[:2]))
    assert facts["python"]["version"].startswith(f"{python}."), facts["python"]

    again = _play(bare_ansible, installed, scratch)
    recap = re.search(rf"^{site.label}\s*:.*$", again, re.MULTILINE)
    assert recap and re.search(r"\bchanged=0\b", recap[0]) and "failed=0" in recap[0], again[-3000:]

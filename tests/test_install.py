"""pwgen installed like real software: a wheel in a fresh venv, used by a non-root user
from a directory outside the checkout (what `pipx install pwgen` gives a user).

Lab (marked `lab`, root; prefix pwin, 10.226.0.0/16, 2 sites x 1 compute node): the
wheel is built from this checkout; a venv of its own (kept across runs in /tmp, its
dependencies installed once) gets it; a local user `pwgeninst` that is not root, with
the lab's ssh key and pinned host keys copied into a scratch project of its own, runs
`pwgen provision` and `pwgen run examples/multisite.py` on both sites there. Nothing
of the checkout is on that user's path: the roles, playbooks and relay come from the
package's own data.
"""

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from lab_helpers import running_lab

from pwgen.lab.state import LabState

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwin", "10.226.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-install-lab"
USER = "pwgeninst"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=1) as state:
        yield state


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pwgen's wheel, built from this checkout as `pip wheel` / `python -m build` would."""
    out = tmp_path_factory.mktemp("dist")
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
    subprocess.run([*argv, str(REPO)], check=True, timeout=600)
    (built,) = out.glob("pwgen-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A venv with the wheel (its dependencies installed once, kept across runs)."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"pwgen-test-install-venv-{key}"
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if not (path / "bin" / "pwgen").exists():
        # The system's Python: every user can run it (this suite's own may live in /root).
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--clear", str(path)], check=True)
        subprocess.run([*pip, str(wheel)], check=True, timeout=900)
    else:  # this checkout's code, the dependencies already there
        subprocess.run([*pip, "--force-reinstall", "--no-deps", str(wheel)], check=True)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def user() -> Iterator[pwd.struct_passwd]:
    """A local user that is not root, with a home of its own."""
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", "-r", "-f", USER], capture_output=True)


def _as_user(account: pwd.struct_passwd, argv: list[str], cwd: Path, venv: Path) -> str:
    env = {
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
         "--", *argv],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _project(account: pwd.struct_passwd) -> Path:
    """The user's project: sites.yaml with its own copy of the key, the pinned host keys
    and the example workflow; owned by the user, nothing else in it."""
    project = Path(account.pw_dir) / "project"
    project.mkdir(mode=0o700)
    for name in ("id_ed25519", "known_hosts"):
        shutil.copy(LAB_DIR / name, project / name)
    (project / "id_ed25519").chmod(0o600)
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
    for site in sites["sites"]:
        site["identity_file"] = str(project / "id_ed25519")
    (project / "sites.yaml").write_text(yaml.safe_dump(sites))
    shutil.copy(REPO / "examples" / "multisite.py", project / "multisite.py")
    for path in [project, *project.iterdir()]:
        os.chown(path, account.pw_uid, account.pw_gid)
    return project


def test_the_wheel_provisions_and_runs_for_a_user_who_is_not_root(
    lab: LabState, venv: Path, user: pwd.struct_passwd
) -> None:
    project = _project(user)
    version = _as_user(user, ["pwgen", "--version"], project, venv)
    assert version.startswith("pwgen ")
    where = _as_user(user, ["python", "-c", "import pwgen; print(pwgen.__file__)"], project, venv)
    assert where.startswith(str(venv)) and str(REPO) not in where  # not the checkout
    provision = ["pwgen", "provision", "--sites", "sites.yaml", "--known-hosts", "known_hosts"]
    _as_user(user, provision, project, venv)
    assert sorted(p.name for p in (project / ".pwgen" / "facts").iterdir()) == [
        "lab1.json",
        "lab2.json",
    ]
    run = ["pwgen", "run", "multisite.py", "--sites", "sites.yaml", "-q", "--", "3"]
    stdout = _as_user(user, run, project, venv)
    hosts = {line.split(" on ")[1] for line in stdout.splitlines() if " on " in line}
    assert hosts == {"lab1-c1", "lab2-c1"}, stdout
    # Everything it wrote is the user's.
    owners = {path.stat().st_uid for path in (project / ".pwgen").rglob("*")}
    assert owners == {user.pw_uid}

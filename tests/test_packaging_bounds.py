"""Dependency bounds and packaging metadata: monitoring is an extra, `--monitor` without
it says what to install, the license ships. The floors themselves are proven by
scripts/check_floor.sh (it installs old releases, so it is not part of this suite)."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers import REPO, assert_one_line_error, run_pwgen

# A Python started with this directory on PYTHONPATH cannot import sqlalchemy, as when
# pwgen is installed without its monitoring extra.
BLOCK_SQLALCHEMY = '''
import sys


class _NoSqlalchemy:
    """Refuses sqlalchemy (not installed, as far as this Python can tell)."""

    def find_spec(self, name, path=None, target=None):
        if name == "sqlalchemy" or name.startswith("sqlalchemy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoSqlalchemy())
'''


def _pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_sqlalchemy_comes_only_with_the_monitoring_extra() -> None:
    project = _pyproject()["project"]
    assert "sqlalchemy" not in _names(project["dependencies"])
    assert project["optional-dependencies"]["monitoring"] == ["parsl[monitoring]"]
    # ... and the installed Parsl's own extra is what brings SQLAlchemy.
    parsl_requires = metadata.requires("parsl") or []
    assert any(
        req.lower().startswith("sqlalchemy") and 'extra == "monitoring"' in req
        for req in parsl_requires
    ), parsl_requires


def test_monitor_without_sqlalchemy_names_the_extra_before_touching_anything(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_SQLALCHEMY)
    env = {"PYTHONPATH": str(blocker)}
    probe = subprocess.run(
        [sys.executable, "-c", "import sqlalchemy"], env=env, capture_output=True, check=False
    )
    assert probe.returncode != 0, "the blocker lets sqlalchemy through"
    (tmp_path / "wf.py").write_text("raise SystemExit('the workflow ran')\n")
    sites = str(REPO / "examples" / "sites.local.yaml")

    result = run_pwgen("run", "wf.py", "--sites", sites, "--monitor", cwd=tmp_path, env=env)

    assert_one_line_error(result, "--monitor", "pip install 'pwgen[monitoring]'", "pipx inject")
    assert not (tmp_path / ".pwgen").exists()  # no run directory, no site started


def test_the_license_and_a_build_backend_that_understands_it() -> None:
    config = _pyproject()
    project = config["project"]
    assert project["license"] == "Apache-2.0"
    for name in project["license-files"]:
        assert "Apache License" in (REPO / name).read_text()
    # An SPDX `license` string and `license-files` need setuptools 77 (PEP 639).
    backend = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    assert backend == ["setuptools>=77"], backend


def test_build_gives_an_sdist_and_a_wheel_that_twine_accepts(tmp_path: Path) -> None:
    """`python -m build` (isolated, as a release would) and `twine check` on both."""
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    artifacts = sorted(path.name for path in tmp_path.iterdir())
    version = metadata.version("pwgen")
    assert artifacts == [f"pwgen-{version}-py3-none-any.whl", f"pwgen-{version}.tar.gz"]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, tmp_path.iterdir())],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


def test_check_floor_runs_checks_and_tests_that_exist() -> None:
    """scripts/check_floor.sh is not part of this suite: what it runs must not rot. Its
    `python -c` check runs here, and every test file it names exists."""
    script = (REPO / "scripts" / "check_floor.sh").read_text()
    checks = re.findall(r"python\" -c '([^']+)'", script)
    assert checks, "check_floor.sh runs no python -c check"
    for check in checks:
        done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
        assert done.returncode == 0, (check, done.stderr)
    named = re.findall(r"tests/\S+\.py", script)
    assert named and all((REPO / path).is_file() for path in named), named

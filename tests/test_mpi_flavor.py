"""The mpiexec of a PBS Pro MPI site: the facts probe (site_facts_mpi), the model, and the
config generator's refusal or warning (pwgen/configgen/mpi.py), offline.

The probe runs this machine's real MPICH (`mpiexec.mpich`, Hydra) and Open MPI
(`mpiexec.openmpi`, ORTE) found through PATH, as the facts module does on a site (the
lab's packages, pwgen/lab/system.py, install both; missing: a skip, a failure under CI).
Intel MPI, Open MPI 5 and Cray PALS are not here: their `--version` text is given.
"""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from facts_samples import provisioned_facts
from helpers import run_pwgen

from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils import site_facts_mpi
from pwgen.configgen import render_config
from pwgen.errors import ConfigError
from pwgen.facts import FactsError, MpiInfo, validate_facts
from pwgen.sites import parse_sites

MPICH = Path("/usr/bin/mpiexec.mpich")
OPENMPI = Path("/usr/bin/mpiexec.openmpi")
SLEEP = shutil.which("sleep")  # before a test narrows PATH


@pytest.fixture
def local_mpis() -> None:
    """Both of this machine's mpiexecs, or a skip (a failure under CI)."""
    missing = [str(path) for path in (MPICH, OPENMPI) if not os.access(path, os.X_OK)]
    if missing:
        message = f"not installed: {', '.join(missing)} (apt: mpich, openmpi-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _probe(monkeypatch: pytest.MonkeyPatch, *path: Path) -> tuple[Any, list[str]]:
    """The `mpi` fact with PATH = `path` only, and the warnings it gave."""
    monkeypatch.setenv("PATH", os.pathsep.join(str(p) for p in path))
    warnings: list[str] = []
    return site_facts_mpi.mpi_facts(warnings.append), warnings


def _bin(directory: Path, target: Path | str) -> Path:
    """`directory/mpiexec`: a link to `target`, or a script when `target` is text."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "mpiexec"
    if isinstance(target, Path):
        link.symlink_to(target)
    else:
        link.write_text(f"#!/bin/sh\n{target}\n")
        link.chmod(0o755)
    return directory


# ---------------------------------------------------------------- the probe


@pytest.mark.usefixtures("local_mpis")
def test_probe_tells_the_real_mpich_and_open_mpi_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mpich, openmpi = _bin(tmp_path / "mpich", MPICH), _bin(tmp_path / "openmpi", OPENMPI)
    found, warnings = _probe(monkeypatch, mpich, openmpi)
    assert warnings == []
    assert found["mpiexec"] == str(mpich / "mpiexec") and found["flavor"] == "mpich"
    assert found["version"].startswith("Version: 4.")  # Hydra's "    Version:   4.0.2"
    # The other one first on PATH: that is the one the site's apps would run.
    found, warnings = _probe(monkeypatch, openmpi, mpich)
    assert (found["mpiexec"], found["flavor"], warnings) == (
        str(openmpi / "mpiexec"),
        "openmpi",
        [],
    )
    assert "(OpenRTE)" in found["version"]
    # What the probe gathered is what the model reads.
    assert MpiInfo.model_validate(found).mpich_style is False


def test_probe_without_mpiexec_or_with_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _probe(monkeypatch, tmp_path / "empty") == (None, [])
    broken = _bin(tmp_path / "broken", "echo 'cannot load libmpi.so.12' >&2; exit 127")
    found, warnings = _probe(monkeypatch, broken)
    assert found == {"mpiexec": str(broken / "mpiexec"), "flavor": "unknown", "version": None}
    assert len(warnings) == 1 and "(exit 127): cannot load libmpi.so.12" in warnings[0]
    # One that never answers is given up on, not waited for.
    monkeypatch.setattr(site_facts_mpi, "VERSION_TIMEOUT", 0.5)
    hung = _bin(tmp_path / "hung", f"exec {SLEEP} 30")
    found, warnings = _probe(monkeypatch, hung)
    assert found["flavor"] == "unknown"
    assert warnings == [f"`{hung}/mpiexec --version` failed: no answer in 0.5 s"]


@pytest.mark.parametrize(
    ("text", "path", "flavor", "version"),
    [
        (
            "Intel(R) MPI Library for Linux* OS, Version 2021.6 Build 20220227 (id: 28877f3f32)\n"
            "Copyright 2003-2022, Intel Corporation.\n",
            "/opt/intel/oneapi/mpi/2021.6.0/bin/mpiexec",
            "intel",
            "Intel(R) MPI Library for Linux* OS, Version 2021.6 Build 20220227 (id: 28877f3f32)",
        ),
        (
            "mpiexec (Open MPI) 5.0.3\n\nReport bugs to https://www.open-mpi.org/community/help/\n",
            "/usr/bin/mpiexec",
            "openmpi",
            "mpiexec (Open MPI) 5.0.3",
        ),
        ("mpiexec version 1.2.12\n", "/opt/cray/pals/1.2.12/bin/mpiexec", "cray", None),
        ("usage: mpiexec [options]\n", "/usr/local/bin/mpiexec", "unknown", None),
        # A terminal escape in the output stays out of the facts (which refuse it).
        ("\x1b[1mMyMPI\x1b[0m 2.1\n", "/usr/bin/mpiexec", "unknown", "[1mMyMPI [0m 2.1"),
    ],
)
def test_flavors_without_a_local_binary(text: str, path: str, flavor: str, version: str) -> None:
    assert site_facts_mpi.mpiexec_flavor(text, path) == flavor
    if version:
        assert site_facts_mpi.version_line(text) == version
    found = {"mpiexec": path, "flavor": flavor, "version": site_facts_mpi.version_line(text)}
    assert MpiInfo.model_validate(found).mpich_style is (flavor in ("intel", "cray"))


# ---------------------------------------------------------------- the model


def test_model_reads_the_mpi_fact_and_old_files() -> None:
    facts = validate_facts(provisioned_facts("p1", scheduler="pbspro"), "x")
    assert facts.mpi_probed and facts.mpi is not None and facts.mpi.mpich_style
    none_found = validate_facts(provisioned_facts("p1", mpi=None), "x")
    assert none_found.mpi_probed and none_found.mpi is None
    old = provisioned_facts("p1")
    del old["mpi"]  # gathered before pwgen looked
    assert validate_facts(old, "x").mpi_probed is False
    with pytest.raises(FactsError, match=r"^x: mpi\.flavor: .*'mpich', 'intel'"):
        validate_facts(provisioned_facts("p1", mpi={"mpiexec": "/m", "flavor": "lam"}), "x")


# ---------------------------------------------------------------- the config


def _project(tmp_path: Path, mpi: Any, site: str) -> Path:
    """A provisioned-looking project: facts for PBS Pro site p1 with this `mpi` fact."""
    project = tmp_path / "project"
    (project / ".pwgen" / "facts").mkdir(parents=True)
    (project / ".pwgen" / "ssh").mkdir()
    (project / ".pwgen" / "ssh" / "config").write_text("Host p1\n    HostName 192.0.2.1\n")
    facts = provisioned_facts("p1", scheduler="pbspro", mpi=mpi)
    if mpi == "absent":
        del facts["mpi"]
    (project / ".pwgen" / "facts" / "p1.json").write_text(json.dumps(facts))
    (project / "sites.yaml").write_text(f"sites:\n  - {{label: p1, host: h, {site}}}\n")
    return project


OPEN_MPI = {"mpiexec": "/usr/bin/mpiexec", "flavor": "openmpi", "version": "mpiexec (OpenRTE) 4.1"}
PBS_MPI = "scheduler: pbspro, executor: mpi, nodes_per_block: 2"


@pytest.mark.usefixtures("local_mpis")
def test_pwgen_config_refuses_the_real_open_mpi_on_a_pbs_mpi_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fact the probe gathers from this machine's Open MPI, refused in one line."""
    mpi, _ = _probe(monkeypatch, _bin(tmp_path / "bin", OPENMPI))
    monkeypatch.undo()
    project = _project(tmp_path, mpi, PBS_MPI)
    done = run_pwgen("config", cwd=project)
    assert done.returncode == 2 and done.stdout == ""
    line = f"pwgen: error: site 'p1': {tmp_path}/bin/mpiexec on the site's PATH is Open MPI "
    assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr
    for needle in ("-ppn", "MPICH-style mpiexec", "PATH in the site's worker_init", "docs/mpi.md"):
        assert needle in done.stderr
    assert not (project / "parsl_config.py").exists()


@pytest.mark.parametrize(
    ("mpi", "site", "warning", "note"),
    [
        # A worker_init may `module load` another MPI: warned, not refused.
        (OPEN_MPI, f"{PBS_MPI}, worker_init: module load mpich", "is Open MPI", None),
        (None, PBS_MPI, "no mpiexec on the site's PATH", None),
        (dict(OPEN_MPI, flavor="mpich"), PBS_MPI, None, "(mpich, mpiexec (OpenRTE) 4.1): takes"),
        (dict(OPEN_MPI, flavor="unknown"), PBS_MPI, None, "pwgen cannot tell if it takes"),
        ("absent", PBS_MPI, None, "mpiexec: not checked (facts gathered before"),
        # Slurm MPI sites start ranks with srun; HTEX sites run no MPI prefix.
        (OPEN_MPI, "scheduler: slurm, executor: mpi", None, None),
        (OPEN_MPI, "scheduler: pbspro", None, None),
    ],
)
def test_config_warns_or_notes_what_it_cannot_refuse(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mpi: Any,
    site: str,
    warning: str | None,
    note: str | None,
) -> None:
    project = _project(tmp_path, mpi, site)
    if "slurm" in site:  # the facts must agree with the sites file
        facts = json.loads((project / ".pwgen/facts/p1.json").read_text())
        facts["scheduler"] = "slurm"
        (project / ".pwgen/facts/p1.json").write_text(json.dumps(facts))
    sites = parse_sites((project / "sites.yaml").read_text())
    source = render_config(sites, source="sites.yaml", state_dir=project / ".pwgen")
    printed = capsys.readouterr().err
    comments = [line for line in source.splitlines() if line.startswith("#   ")]
    if warning is None:
        assert printed == "" and not any("warning" in line for line in comments)
    else:
        assert printed.startswith("pwgen: warning: site 'p1': ") and warning in printed
        assert printed.count("\n") == 1 and "docs/mpi.md" in printed
        assert "#   warning: site 'p1': " in source
    if note is not None:
        assert any(line.startswith("#   mpiexec: ") and note in line for line in comments)
    elif warning is None:
        assert not any("mpiexec" in line for line in comments)


def test_refusal_is_one_config_error_before_anything_is_written(tmp_path: Path) -> None:
    project = _project(tmp_path, OPEN_MPI, PBS_MPI)
    sites = parse_sites((project / "sites.yaml").read_text())
    with pytest.raises(ConfigError) as err:
        render_config(sites, source="sites.yaml", state_dir=project / ".pwgen")
    message = str(err.value)
    assert "\n" not in message and message.startswith("site 'p1': /usr/bin/mpiexec ")
    assert "(mpiexec (OpenRTE) 4.1), which refuses" in message
    assert "or in its ~/.bashrc and run `pwgen provision` again" in message


def test_the_probe_needs_nothing_but_the_standard_library() -> None:
    """It runs on the site with the system Python: no pwgen, no third-party import."""
    source = Path(site_facts_mpi.__file__).read_text()
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}

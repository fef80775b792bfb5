"""Flux in the lab (`pwgen lab up --flux`) and a site's `flux:` key.

Fast: FluxSpec validation through the sites loader; a tarball that is missing, not a
tarball, or not the pinned sha256 of its name, and a release download that fails, each
end in one LabError line (no build, nothing under /opt).

Lab (marked `lab`, root; prefix pwfx, 10.227.0.0/16, 2 sites x 2 compute nodes): the
flux-core 0.88.0 tarball of `../shared/flux/` (or $PWGEN_FLUX_TARBALL) is built once
per machine under /opt/pwgen-lab/flux and reused; `pwgen lab up --flux` makes the last
site a Flux site using it, `lab status` shows it, and `srun -N2 --mpi=pmi2 flux start`
on that site forms one 2-node Flux instance. Under CI (CI=true) a missing tarball
fails these tests; elsewhere it skips them.
"""

import io
import itertools
import json
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import PWGEN, REPO, run_pwgen
from lab_helpers import (
    flux_tarball,
    lab_cli,
    masters_stopped,
    netns_processes,
    pwgen_provision,
    ssh,
    wait_for,
)

from pwgen.errors import SitesError
from pwgen.lab import flux
from pwgen.lab.errors import LabError
from pwgen.lab.flux import ensure_flux, is_built, prefix_for
from pwgen.lab.state import load_state
from pwgen.sites import parse_sites

PREFIX, SUBNET = "pwfx", "10.227.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-flux-lab"
TARBALL_NAME = "flux-core-0.88.0.tar.gz"
EXAMPLE = REPO / "examples" / "flux_multisite.py"
SITE = "label: f\nscheduler: slurm\nhost: h\nexecutor: flux\n"


# ---------------------------------------------------------------- FluxSpec (fast)


def _flux_site(flux_yaml: str, site: str = SITE) -> str:
    body = "".join(f"    {line}\n" for line in (site + flux_yaml).splitlines())
    return "sites:\n  -" + body[3:]


def test_flux_spec_of_a_system_site_loads() -> None:
    text = _flux_site("flux:\n  method: system\n  version: 0.88.0\n  path: /opt/flux\n")
    (site,) = parse_sites(text)
    assert site.flux is not None
    assert (site.flux.method, site.flux.version, site.flux.path) == (
        "system",
        "0.88.0",
        "/opt/flux",
    )
    (plain,) = parse_sites(_flux_site(""))
    assert plain.flux is None  # no key: pwgen's default (conda) as before


@pytest.mark.parametrize(
    ("flux_yaml", "expected"),
    [
        ("flux: {method: system}", "method system needs the path"),
        ("flux: {method: system, path: opt/flux}", "'opt/flux' is not an absolute path"),
        ("flux: {method: source}", "method source needs a tarball"),
        ("flux: {method: conda, tarball: /f.tar.gz}", "tarball is not used by method conda"),
        ("flux: {method: conda, path: /opt/flux}", "path is not used by method conda"),
        ("flux: {method: spack}", "flux.method"),
        ("flux: {method: conda, version: latest}", "'latest' is not a flux-core version"),
        ("flux: {method: system, path: /x, pth: /y}", "unknown key 'pth' (did you mean 'path'?)"),
        ("flux: {method: system, path: '/x/{{ lookup }}'}", "Ansible template marker"),
    ],
)
def test_bad_flux_spec_is_one_line(flux_yaml: str, expected: str) -> None:
    with pytest.raises(SitesError) as caught:
        parse_sites(_flux_site(flux_yaml + "\n"), source="s.yaml")
    message = str(caught.value)
    assert expected in message and "\n" not in message and message.startswith("s.yaml:")


def test_flux_key_needs_a_flux_executor() -> None:
    site = SITE.replace("executor: flux", "executor: htex")
    with pytest.raises(SitesError, match="flux is for executor flux sites, not htex"):
        parse_sites(_flux_site("flux: {method: conda}\n", site))


# ---------------------------------------------------------------- bad sources (fast)


def _fake_flux_tarball(path: Path, configure: bool = True) -> Path:
    """A small .tar.gz shaped like a flux-core release (or not, without `configure`)."""
    with tarfile.open(path, "w:gz") as archive:
        name = "flux-core-0.88.0/configure" if configure else "flux-core-0.88.0/README"
        data = b"#!/bin/sh\nexit 1\n"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def _one_line_error(source: str, root: Path) -> str:
    with pytest.raises(LabError) as caught:
        ensure_flux(source, root=root)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_wrong_sha256_of_a_pinned_tarball_fails_in_one_line(tmp_path: Path) -> None:
    tarball = _fake_flux_tarball(tmp_path / TARBALL_NAME)
    message = _one_line_error(str(tarball), tmp_path / "root")
    assert f"is not the pinned {flux.PINNED_SHA256[TARBALL_NAME]}" in message
    assert not (tmp_path / "root").exists()  # refused before anything is built


def test_not_a_flux_tarball_fails_in_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.tar.gz"
    text.write_text("not an archive\n")
    assert "not a .tar.gz archive" in _one_line_error(str(text), tmp_path / "root")
    other = _fake_flux_tarball(tmp_path / "other.tar.gz", configure=False)
    assert "not a flux-core release tarball" in _one_line_error(str(other), tmp_path / "root")
    assert "no such file" in _one_line_error(str(tmp_path / "missing.tar.gz"), tmp_path)


def test_failed_release_download_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on loopback port 9: the download fails at once, offline.
    monkeypatch.setattr(flux, "RELEASE_URL", "http://127.0.0.1:9/flux-core-0.88.0.tar.gz")
    message = _one_line_error(flux.RELEASE, tmp_path / "root")
    assert message.startswith("cannot download http://127.0.0.1:9/")
    assert message.endswith("give a local tarball with --flux PATH")


def test_a_build_without_its_marker_is_not_reused(tmp_path: Path) -> None:
    sha = "ab" * 32
    prefix = prefix_for(sha, tmp_path)
    (prefix / "bin").mkdir(parents=True)  # an interrupted `make install`
    assert not is_built(prefix, sha)
    (prefix / flux.MARKER).write_text("cd" * 32 + "\n")  # another tarball's
    assert not is_built(prefix, sha)
    (prefix / flux.MARKER).write_text(sha + "\n")
    assert is_built(prefix, sha)


# ---------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def tarball() -> Path:
    """The shared flux-core tarball; missing: a skip here, a failure under CI."""
    return flux_tarball()


@pytest.fixture(scope="module")
def flux_build(tarball: Path) -> flux.FluxBuild:
    return ensure_flux(str(tarball))  # the first time on a machine: ~5 minutes


@pytest.mark.lab
def test_build_is_made_once_and_reused(tarball: Path, flux_build: flux.FluxBuild) -> None:
    started = time.monotonic()
    again = ensure_flux(str(tarball))
    assert time.monotonic() - started < 10
    assert not again.built
    assert again.prefix == flux_build.prefix == prefix_for(flux.sha256_of(tarball))
    assert again.version == "0.88.0"
    assert (again.prefix / flux.MARKER).read_text().strip() == flux.sha256_of(tarball)
    flux_cmd = again.prefix / "bin" / "flux"
    assert flux_cmd.stat().st_uid == 0 and flux_cmd.stat().st_mode & 0o005 == 0o005


@pytest.mark.lab
def test_lab_up_with_a_wrong_tarball_fails_in_one_line(tarball: Path, tmp_path: Path) -> None:
    wrong = _fake_flux_tarball(tmp_path / TARBALL_NAME)
    state_dir = tmp_path / "lab"
    done = run_pwgen("lab", "up", "--flux", str(wrong), "--state-dir", str(state_dir), cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "is not the pinned" in done.stderr
    assert not state_dir.exists()  # refused before the lab was touched


@pytest.fixture(scope="module")
def flux_lab(tarball: Path, flux_build: flux.FluxBuild) -> Iterator[Path]:
    lab_cli("down", "--state-dir", str(LAB_DIR))  # a run killed half-way left it up
    try:
        args = ["--site-count", "2", "--compute-nodes", "2", "--name", PREFIX, "--subnet", SUBNET]
        done = lab_cli(
            "up", *args, "--flux", str(tarball), "--state-dir", str(LAB_DIR), timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert "flux 0.88.0 reused" in done.stderr
        yield LAB_DIR
    finally:
        lab_cli("down", "--state-dir", str(LAB_DIR))


@pytest.mark.lab
def test_lab_up_flux_makes_the_last_site_a_flux_site(
    flux_lab: Path, flux_build: flux.FluxBuild
) -> None:
    sites = yaml.safe_load((flux_lab / "sites.yaml").read_text())["sites"]
    first, last = sites
    assert "executor" not in first and "flux" not in first  # htex, as before
    assert (last["label"], last["executor"], last["nodes_per_block"]) == ("lab2", "flux", 2)
    assert last["flux"] == {"method": "system", "version": "0.88.0", "path": str(flux_build.prefix)}
    status = lab_cli("status", "--state-dir", str(flux_lab))
    assert status.returncode == 0, status.stderr
    assert f"Flux 0.88.0 at {flux_build.prefix} (site lab2)" in status.stdout
    as_json = lab_cli("status", "--json", "--state-dir", str(flux_lab))
    assert '"prefix": "' + str(flux_build.prefix) + '"' in as_json.stdout


@pytest.mark.lab
def test_srun_pmi2_forms_one_two_node_flux_instance(
    flux_lab: Path, flux_build: flux.FluxBuild
) -> None:
    flux_cmd = flux_build.prefix / "bin" / "flux"
    out = ssh(flux_lab, "lab2", f"srun -N2 --mpi=pmi2 {flux_cmd} start flux resource list", 120)
    free = next(line.split() for line in out.splitlines() if line.split()[:1] == ["free"])
    assert free[1] == "2", out  # NNODES: one instance over both compute nodes
    assert "lab2-c[1-2]" in out


@pytest.fixture(scope="module")
def flux_project(flux_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Flux lab provisioned (lab1 htex, lab2 flux with the lab's system Flux)."""
    project = tmp_path_factory.mktemp("flux-project")
    pwgen_provision(project, "--sites", str(flux_lab / "sites.yaml"))
    with masters_stopped(project, ["lab1", "lab2"]):
        yield project


def _flux_leftovers(flux_lab: Path) -> list[str]:
    """Flux brokers, MPI ranks and Slurm jobs still alive on the Flux site."""
    lab2 = load_state(flux_lab).site("lab2")  # type: ignore[union-attr]
    found = [
        line
        for node in lab2.computes  # type: ignore[union-attr]
        for marker in ("flux-broker", "mpi_hello")
        for line in netns_processes(node.netns, marker)
    ]
    jobs = ssh(flux_lab, "lab2", "squeue --noheader --format=%i", 60).split()
    return found + [f"slurm job {job}" for job in jobs]


def _run_example(project: Path, *args: str) -> list[str]:
    sites = str(LAB_DIR / "sites.yaml")
    argv = ("run", str(EXAMPLE), "--sites", sites, "--", "lab1", "lab2", *args)
    done = run_pwgen(*argv, cwd=project, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@pytest.mark.lab
def test_a_flux_site_runs_mpi_apps_beside_an_htex_site(flux_project: Path) -> None:
    out = _run_example(flux_project, "3", "2")
    squares = next(line for line in out if line.startswith("squares on lab1: "))
    assert squares.startswith("squares on lab1: 2470 (['lab1-")  # the python apps: lab1 only
    reports = {
        line.split(":")[0].removeprefix("flux app "): json.loads(line.split(": ", 1)[1])
        for line in out
        if line.startswith("flux app ")
    }
    assert set(reports) == {f"{mpi}-{i}" for mpi in ("openmpi", "mpich") for i in range(3)}
    for name, report in reports.items():  # one MPI job of 2 ranks over both nodes
        assert report["size"] == 2 and report["rank_sum"] == 1, name
        assert {rank["host"] for rank in report["ranks"]} == {"lab2-c1", "lab2-c2"}, name
    # Flux packs them: the 4 cores of the block run 2 of these 2-rank apps at once.
    spans = sorted((r["start"], r["end"]) for r in reports.values())
    overlapping = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlapping >= 2, spans
    assert wait_for(lambda: not _flux_leftovers(LAB_DIR), timeout=60), _flux_leftovers(LAB_DIR)


@pytest.mark.lab
def test_ctrl_c_leaves_no_flux_broker_job_or_block(flux_project: Path) -> None:
    sites = str(LAB_DIR / "sites.yaml")
    argv = [str(PWGEN), "run", str(EXAMPLE), "--sites", sites, "--", "lab1", "lab2", "2", "300"]
    with subprocess.Popen(
        argv, cwd=flux_project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as run:
        try:
            ranks_up = wait_for(
                lambda: any("mpi_hello" in line for line in _flux_leftovers(LAB_DIR)), 180
            )
            assert ranks_up, "no MPI rank ever ran under Flux on lab2"
            run.send_signal(signal.SIGINT)
            _, stderr = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 130, stderr
    assert wait_for(lambda: not _flux_leftovers(LAB_DIR), timeout=60), _flux_leftovers(LAB_DIR)


@pytest.mark.lab
def test_lab_up_again_keeps_flux_and_down_keeps_the_build(
    flux_lab: Path, flux_build: flux.FluxBuild
) -> None:
    again = lab_cli("up", "--state-dir", str(flux_lab), timeout=300)  # no --flux: kept
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load((flux_lab / "sites.yaml").read_text())["sites"][-1]["executor"] == "flux"
    down = lab_cli("down", "--state-dir", str(flux_lab))
    assert down.returncode == 0, down.stderr
    assert is_built(flux_build.prefix, flux_build.sha256)  # per machine: reused by later labs

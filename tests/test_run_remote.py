"""`pwgen run` on two provisioned lab sites: results from compute nodes, preflight, teardown."""

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PWGEN, REPO, parsl_processes, run_pwgen
from lab_helpers import on_project_site, project_ssh, provisioned_lab

from pwgen.poll import poll

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwrn", "10.236.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-run-lab"
SITES = str(LAB_DIR / "sites.yaml")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose two lab sites (2 compute nodes each) are provisioned."""
    path = tmp_path_factory.mktemp("project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, path, 2, 2, provision_args=["--json"]):
        yield path


def _assert_sites_clean(project: Path) -> None:
    """No jobs, relays or worker pools on the sites; no master or Parsl process here."""
    assert parsl_processes() == []
    for label in ("lab1", "lab2"):
        assert on_project_site(project, label, "squeue -h") == ""
        live = on_project_site(project, label, "ps -eo stat=,args= | grep -v '^Z' || true")
        assert "pwgen-relay" not in live and "process_worker_pool" not in live, live
        project_ssh(project).stop_master(label)  # the probe's own master


def _run_dir(project: Path) -> Path:
    return max((project / ".pwgen" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)


def test_multisite_example_runs_on_compute_nodes(project: Path) -> None:
    example = str(REPO / "examples" / "multisite.py")
    done = run_pwgen("run", example, "--sites", SITES, "--", "10", cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("lab1", "lab2"):
        for x in range(10):
            assert f"{label}: square({x}) = {x * x} on {label}-c" in done.stdout
    manifest = json.loads((_run_dir(project) / "manifest.json").read_text())
    assert manifest["exit_code"] == 0
    assert set(manifest["site_versions"]) == {"lab1", "lab2"}
    assert manifest["facts"]["lab1"]["env"]["hash"] == manifest["facts"]["lab2"]["env"]["hash"]
    assert {"preflight", "load", "workflow", "cleanup"} <= set(manifest["timings"])
    _assert_sites_clean(project)


def test_ctrl_c_mid_run_tears_both_sides_down(project: Path) -> None:
    # Listeners during a run: tests/test_security.py (both sites, sampled all along).
    workflow = project / "slow.py"
    workflow.write_text(
        "from parsl import python_app\n"
        "@python_app(executors=['lab1'])\n"
        "def nap():\n    import time; time.sleep(20)\n\n"
        "f = nap()\nprint('submitted', flush=True)\nf.result()\n"
    )
    proc = subprocess.Popen(
        [str(PWGEN), "run", str(workflow), "--sites", SITES],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
        pool_started = poll(
            lambda: "process_worker_pool" in on_project_site(project, "lab1", "ps -eo args="),
            60,
            interval=0.5,
        )
        assert pool_started, "no worker pool started on lab1"
        # Ctrl-C mid-run: everything comes down on both sides.
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
    finally:
        if proc.poll() is None:  # a failed assertion above: still tear the run down
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    _assert_sites_clean(project)


def test_preflight_refuses_a_changed_parsl(project: Path) -> None:
    facts = json.loads((project / ".pwgen/facts/lab2.json").read_text())
    version_py = f"{facts['env']['path']}/lib/python3.11/site-packages/parsl/version.py"
    on_project_site(
        project, "lab2", f"sed -i.orig \"s/^VERSION = .*/VERSION = '2020.01.01'/\" {version_py}"
    )
    try:
        example = str(REPO / "examples" / "multisite.py")
        done = run_pwgen("run", example, "--sites", SITES, cwd=project, timeout=120)
    finally:
        on_project_site(project, "lab2", f"mv {version_py}.orig {version_py}")
    assert done.returncode == 2
    assert "lab2" in done.stderr and "2020.01.01" in done.stderr and "MISMATCH" in done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("pwgen: error:")]
    assert "site(s) lab2 do not run the controller's Parsl" in error
    assert "Traceback" not in done.stderr
    _assert_sites_clean(project)

"""`pwgen provision` on two lab sites: pinned Parsl everywhere, facts, idempotence, failures.

Real sshd, Slurm and Ansible (through ansible-runner); the wheelhouse method, since
lab sites have no internet.
"""

import glob
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import parsl
import pytest
import yaml
from helpers import BIN, run_pwgen
from lab_helpers import on_project_site, pwgen_provision, running_lab

import pwgen_worker
from pwgen.assets import ansible_dir
from pwgen.facts import read_facts
from pwgen.lab.state import LabState
from pwgen.provision import failure_message, provision
from pwgen.sites import load_sites
from pwgen.ssh import prepare_ssh

pytestmark = pytest.mark.lab

PREFIX, SUBNET = "pwpv", "10.254.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-provision-lab"
CONTROLLER_PYTHON = ".".join(platform.python_version_tuple()[:2])


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=1) as state:
        yield state


@pytest.fixture(scope="module")
def workdir(lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory whose .pwgen/ holds one cold provision of both sites."""
    path = tmp_path_factory.mktemp("project")
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
    lab2 = sites["sites"][1]
    lab2["workdir"] = f"/home/{lab2['user']}/pwpv-scratch"  # a scratch dir of its own
    (path / "sites.yaml").write_text(yaml.safe_dump(sites))
    pwgen_provision(path, "--sites", "sites.yaml", "--known-hosts", str(LAB_DIR / "known_hosts"))
    return path


def _facts(workdir: Path, label: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (workdir / ".pwgen" / "facts" / f"{label}.json").read_text()
    )
    return data


def _site_python(facts: dict[str, object]) -> str:
    """The Python of the env provisioning built on the site (the facts' `env.path`)."""
    env = facts["env"]
    assert isinstance(env, dict)
    return f"{env['path']}/bin/python"


def _remote(workdir: Path, label: str, command: str) -> str:
    return on_project_site(workdir, label, command).strip()


def test_cold_provision_pins_the_controllers_versions(lab: LabState, workdir: Path) -> None:
    for site in lab.sites:
        facts = _facts(workdir, site.label)
        python = _site_python(facts)
        remote = _remote(
            workdir,
            site.label,
            f"{python} -c 'import parsl, sys; print(parsl.__version__, *sys.version_info[:2])'",
        )
        assert remote.split() == [parsl.__version__, *CONTROLLER_PYTHON.split(".")]
        assert facts["parsl_version"] == parsl.__version__


_WORKER_CHECK = (
    "import os, sysconfig, pwgen_worker as w; "
    'print(sysconfig.get_paths()["purelib"], w.__file__, w.__version__, '
    "oct(os.stat(w.__file__).st_mode & 0o777))"
)


def test_sites_import_the_worker_helpers(lab: LabState, workdir: Path) -> None:
    """pwgen_worker sits in each env's pure-lib site-packages (0644) and imports as on a worker."""
    for site in lab.sites:
        facts = _facts(workdir, site.label)
        check = f"{_site_python(facts)} -I -c '{_WORKER_CHECK}'"
        purelib, path, version, mode = _remote(workdir, site.label, check).split()
        assert path == f"{purelib}/pwgen_worker.py" == facts["worker_helpers"]
        assert version == pwgen_worker.__version__
        assert mode == "0o644"


def test_facts_match_the_lab(lab: LabState, workdir: Path) -> None:
    for site in lab.sites:
        facts = _facts(workdir, site.label)
        partitions = {p["name"]: p for p in facts["partitions"]}  # type: ignore[union-attr]
        assert set(partitions) == {"compute", "debug"}
        assert partitions["compute"]["default"] and not partitions["debug"]["default"]
        assert partitions["compute"]["nodes"] == 1
        assert partitions["compute"]["cpus_per_node"] == os.cpu_count()
        assert facts["internal_address"] == site.login.ip  # what compute nodes reach
        assert facts["scheduler"] == "slurm"
        scratch = site.label == "lab2"  # sites.yaml's workdir: reaches the facts role
        expected = (
            f"/home/{site.user}/pwpv-scratch" if scratch else f"/home/{site.user}/.pwgen/work"
        )
        assert facts["workdir"] == expected
        # The model reads all of it: every env key provisioning recorded, and when.
        model = read_facts(workdir / ".pwgen" / "facts", site.label)
        assert model.env is not None and model.env.model_dump(exclude_none=True) == facts["env"]
        assert model.gathered_at == facts["gathered_at"] and model.env_dir == facts["env_path"]
        # The mpiexec a command over ssh finds first (the lab nodes have MPICH and Open MPI).
        found = _remote(workdir, site.label, "command -v mpiexec")
        assert model.mpi is not None and model.mpi.mpiexec == found
        assert model.mpi.flavor in ("mpich", "openmpi") and model.mpi.version


def test_second_provision_changes_nothing(lab: LabState, workdir: Path) -> None:
    result = run_pwgen("provision", "--sites", "sites.yaml", "--json", cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert sorted(reports) == ["lab1", "lab2"]
    assert {label: r["changed"] for label, r in reports.items()} == {"lab1": 0, "lab2": 0}


def test_check_diff_and_verbose_change_nothing(lab: LabState, workdir: Path) -> None:
    facts = workdir / ".pwgen" / "facts"
    before = {path.name: path.stat().st_mtime_ns for path in facts.iterdir()}
    argv = ("provision", "--sites", "sites.yaml", "--check", "--diff", "--json")
    result = run_pwgen(*argv, cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert {label: r["changed"] for label, r in reports.items()} == {"lab1": 0, "lab2": 0}
    assert {path.name: path.stat().st_mtime_ns for path in facts.iterdir()} == before
    shown = run_pwgen(
        "provision", "--sites", "sites.yaml", "-v", "--check", cwd=workdir, timeout=300
    )
    assert shown.returncode == 0, shown.stderr
    assert "PLAY [Provision pwgen sites]" in shown.stdout and "PLAY RECAP" in shown.stdout


def _provision_variant(
    project: Path, sites: dict[str, Any], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`pwgen provision` of a changed copy of the lab's sites, its host keys named."""
    (project / "sites.yaml").write_text(yaml.safe_dump(sites))
    known_hosts = str(LAB_DIR / "known_hosts")
    argv = ("provision", "--sites", "sites.yaml", "--known-hosts", known_hosts, *args)
    return run_pwgen(*argv, cwd=project, timeout=timeout)


def test_unreachable_site_fails_alone(lab: LabState, tmp_path: Path) -> None:
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
    ghost = dict(sites["sites"][0], label="ghost", host=SUBNET.replace("0.0/16", "0.250"))
    sites["sites"].append(ghost)
    result = _provision_variant(tmp_path, sites, "--accept-new-host-keys", timeout=600)
    assert result.returncode == 1
    assert "pwgen: error: site ghost:" in result.stderr
    assert "lab1" not in result.stderr and "lab2" not in result.stderr
    assert sorted(p.name for p in (tmp_path / ".pwgen" / "facts").iterdir()) == [
        "lab1.json",
        "lab2.json",
    ]


def test_secrets_never_reach_runner_artifacts(
    lab: LabState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "pwt_c2VjcmV0.TopSecretValue42"
    monkeypatch.setenv("PW_API_KEY", secret)
    monkeypatch.chdir(tmp_path)
    sites = load_sites(LAB_DIR / "sites.yaml")[:1]
    ssh = prepare_ssh(sites, tmp_path / ".pwgen", [LAB_DIR / "known_hosts"])
    seen: list[str] = []

    def inspect_artifacts(_: object) -> None:
        for path in glob.glob(f"{tempfile.gettempdir()}/pwgen-runner-*/artifacts/*/*"):
            if os.path.isfile(path):
                seen.append(path)
                assert secret not in Path(path).read_text(errors="replace"), path

    reports = provision(sites, tmp_path / ".pwgen", ssh, on_update=inspect_artifacts)
    ssh.stop_master("lab1")
    assert not reports["lab1"].failed, reports["lab1"].error
    assert any(path.endswith("/command") for path in seen), "artifacts were not inspected"
    assert not glob.glob(f"{tempfile.gettempdir()}/pwgen-runner-*"), "private dir left behind"


def test_sysadmin_runs_the_playbook_without_pwgen(lab: LabState, tmp_path: Path) -> None:
    inventory = tmp_path / "pwgen.yml"
    assert (
        run_pwgen(
            "inventory", "--from", str(LAB_DIR / "sites.yaml"), "-o", str(inventory), cwd=tmp_path
        ).returncode
        == 0
    )
    facts_dir = tmp_path / "facts"
    facts_dir.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ansible_dir() / "ansible.cfg"),
    }
    done = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            "pwgen.hpc.provision",  # the collection playbook, by name
            "-e",
            json.dumps({"ansible_ssh_common_args": f"-o UserKnownHostsFile={LAB_DIR}/known_hosts"}),
            "-e",
            f"site_facts_controller_dir={facts_dir}",
            "-e",
            f"parsl_env_cache={tmp_path / 'wheelhouse'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for label in ("lab1", "lab2"):
        facts = json.loads((facts_dir / f"{label}.json").read_text())
        assert facts["parsl_version"] == parsl.__version__


def test_python_mismatch_fails_with_the_fix(lab: LabState, workdir: Path, tmp_path: Path) -> None:
    # An interpreter on the site that is not the controller's major.minor.
    fake = f"/home/{lab.sites[0].user}/oldpython3.9"
    _remote(workdir, "lab1", f"printf '#!/bin/sh\\necho 3.9\\n' > {fake} && chmod +x {fake}")
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
    sites["sites"][0]["env"] = {"python": fake}
    result = _provision_variant(tmp_path, sites, "--limit", "lab1")
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("pwgen: error:")]
    assert "site lab1:" in error and "is 3.9" in error
    assert f"Fix: install python{CONTROLLER_PYTHON}" in error


def test_failure_message_adds_what_stderr_says() -> None:
    assert failure_message({"msg": "non-zero return code", "stderr": "a\nb: not found\n"}) == (
        "non-zero return code: b: not found"
    )
    assert (
        failure_message({"msg": "site x: no python3.11", "stderr": ""}) == "site x: no python3.11"
    )
    assert failure_message({"stderr": "boom"}) == "boom"
    assert failure_message({}) == "failed"

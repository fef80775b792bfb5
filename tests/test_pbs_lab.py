"""OpenPBS in the lab (`pwgen lab up --scheduler pbspro`, `--schedulers slurm,pbspro`).

Fast: a wrong OpenPBS tarball and wrong scheduler options each end in one LabError
line (nothing built); the per-node pbs.conf of a login and a compute node.

Lab (marked `lab`, root; prefix pwpb, 10.222.0.0/16): the OpenPBS 23.06.06 tarball of
`../shared/pbs/` (or $PWGEN_PBS_TARBALL) is built once per machine under
/opt/pwgen-lab/pbs and reused. One lab of three sites x 2 compute nodes, PBS, Slurm,
PBS (two PBS sites at once): real qsub / qstat -x / qdel over ssh as each site's user,
a 2-chunk scatter job over both moms, the debug queue's walltime limit, `lab status`;
`pwgen provision` on a PBS and a Slurm site (queues, node shapes, walltime limits in
the facts) and `examples/multisite.py` run on both at once, its PBS block qdel'ed at
the end; and a `lab down` that leaves no PBS process, mount, IPC segment or /var/tmp
file.
Under CI (CI=true) a missing tarball fails these tests; elsewhere it skips them.
"""

import io
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import REPO, run_pwgen
from lab_helpers import (
    lab_cli,
    lab_status,
    pbs_tarball,
    pwgen_provision,
    sbatch_and_wait,
    skip_reason,
    ssh,
    stop_masters,
)

from pwgen.lab import flux, pbs, pbs_build
from pwgen.lab.errors import LabError
from pwgen.lab.pbs_build import PbsBuild, check_tarball, ensure_pbs
from pwgen.lab.plan import make_options, site_plan
from pwgen.lab.procs import alive, netns_pids
from pwgen.lab.state import LabState, load_state

PREFIX, SUBNET = "pwpb", "10.222.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-pbs-lab"
SCHEDULERS = ("pbspro", "slurm", "pbspro")
# Files OpenPBS writes under fixed names in /var/tmp (each lab node has its own).
VAR_TMP_NAMES = ("pbs_boot_check", ".pbs_last_query_")


# ---------------------------------------------------------------- options (fast)


def _one_line(error: pytest.ExceptionInfo[LabError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_wrong_pbs_tarballs_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(LabError) as missing:
        check_tarball(str(tmp_path / "none.tar.gz"))
    assert "no such file" in _one_line(missing) and "PWGEN_PBS_TARBALL" in str(missing.value)
    notes = tmp_path / "notes.tar.gz"
    notes.write_text("not an archive\n")
    with pytest.raises(LabError) as not_tar:
        check_tarball(str(notes))
    assert "not a .tar.gz archive" in _one_line(not_tar)
    fake = tmp_path / pbs_build.TARBALL_NAME
    with tarfile.open(fake, "w:gz") as archive:
        info = tarfile.TarInfo("openpbs-23.06.06/autogen.sh")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(LabError) as wrong_sha:
        ensure_pbs(str(fake), root=tmp_path / "root")
    assert f"is not the pinned {pbs_build.PINNED_SHA256[fake.name]}" in _one_line(wrong_sha)
    assert not (tmp_path / "root").exists()  # refused before anything is built


@pytest.mark.parametrize(
    ("schedulers", "sites", "pbs_tarball", "expected"),
    [
        (("pbs",), 2, "t.tar.gz", "--schedulers 'pbs': use one of slurm, pbspro"),
        (("slurm", "pbspro"), 3, "t.tar.gz", "names 2 sites, but --site-count is 3"),
        (("pbspro",), 2, None, "give --pbs-tarball PATH or set $PWGEN_PBS_TARBALL"),
    ],
)
def test_bad_scheduler_options_are_one_line(
    schedulers: tuple[str, ...], sites: int, pbs_tarball: str | None, expected: str, tmp_path: Path
) -> None:
    with pytest.raises(LabError) as caught:
        make_options(PREFIX, SUBNET, sites, 2, tmp_path, None, schedulers, pbs_tarball)
    assert expected in _one_line(caught)


def test_each_site_gets_its_scheduler_and_each_node_its_pbs_conf(tmp_path: Path) -> None:
    options = make_options(PREFIX, SUBNET, 3, 2, tmp_path, None, SCHEDULERS, "t.tar.gz")
    plans = [site_plan(options, index) for index in (1, 2, 3)]
    assert [plan.scheduler for plan in plans] == list(SCHEDULERS)
    everywhere = make_options(PREFIX, SUBNET, 2, 1, tmp_path, None, ("pbspro",), "t.tar.gz")
    assert site_plan(everywhere, 2).scheduler == "pbspro"
    login = pbs.pbs_conf(plans[0], "login", Path("/opt/x"))
    compute = pbs.pbs_conf(plans[0], "compute", Path("/opt/x"))
    assert "PBS_SERVER=lab1-login\n" in login and "PBS_SERVER=lab1-login\n" in compute
    assert "PBS_START_SERVER=1\n" in login and "PBS_START_MOM=0\n" in login
    assert "PBS_START_SERVER=0\n" in compute and "PBS_START_MOM=1\n" in compute
    assert "PBS_TMPDIR=/var/spool/pbs/tmp\n" in login and "PBS_EXEC=/opt/x\n" in compute


# ---------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def tarball() -> Path:
    """The shared OpenPBS tarball; missing: a skip here, a failure under CI."""
    path = pbs_tarball()
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def build(tarball: Path) -> PbsBuild:
    return ensure_pbs(str(tarball))  # the first time on a machine: ~3 minutes


def _postgres_segments() -> int:
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    return sum(" postgres " in line for line in out.splitlines())


@pytest.fixture(scope="module")
def pbs_lab(tarball: Path, build: PbsBuild) -> Iterator[LabState]:
    lab_cli("down", "--state-dir", str(LAB_DIR))  # a run killed half-way left it up
    try:
        args = ["--compute-nodes", "2", "--name", PREFIX, "--subnet", SUBNET]
        schedulers = ",".join(SCHEDULERS)
        done = lab_cli(
            "up", *args, "--schedulers", schedulers, "--pbs-tarball", str(tarball),
            "--state-dir", str(LAB_DIR), timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "openpbs 23.06.06 reused" in done.stderr
        state = load_state(LAB_DIR)
        assert state is not None
        yield state
    finally:
        lab_cli("down", "--state-dir", str(LAB_DIR))


@pytest.mark.lab
def test_build_is_made_once_and_reused(tarball: Path, build: PbsBuild) -> None:
    started = time.monotonic()
    again = ensure_pbs(str(tarball))
    assert time.monotonic() - started < 10 and not again.built
    assert again.prefix == build.prefix and again.sha256 == flux.sha256_of(tarball)
    assert (again.prefix / pbs_build.MARKER).read_text().strip() == again.sha256
    for program in pbs_build.SETUID_PROGRAMS:  # resvport authentication of users
        assert (again.prefix / program).stat().st_mode & 0o4755 == 0o4755
    qsub = again.prefix / "bin" / "qsub"
    assert qsub.stat().st_uid == 0 and qsub.stat().st_mode & 0o005 == 0o005


@pytest.mark.lab
def test_sites_yaml_and_status_show_pbs_sites(pbs_lab: LabState, build: PbsBuild) -> None:
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())["sites"]
    assert [(s["label"], s["scheduler"], s["partition"]) for s in sites] == [
        ("lab1", "pbspro", "workq"),
        ("lab2", "slurm", "compute"),
        ("lab3", "pbspro", "workq"),
    ]
    status = lab_status(LAB_DIR)
    assert [site["healthy"] for site in status["sites"]] == [True, True, True]
    first = status["sites"][0]
    assert first["pbs"] == {
        "pbs_comm": 1,
        "postgres": 1,
        "pbs_server.bin": 1,
        "pbs_sched": 1,
        "pbs_mom": 2,
    }
    assert first["sinfo"] == "pbsnodes: 2 free; queues: workq, debug"
    assert status["pbs"]["prefix"] == str(build.prefix)
    table = lab_cli("status", "--state-dir", str(LAB_DIR))
    assert table.returncode == 0, table.stderr
    for text in ("pbspro", "pbs_server 1/1", "pbs_mom 2/2", "pbsnodes 2 free", "slurmctld 1/1"):
        assert text in table.stdout


def _wait_state(site: str, job: str, want: str, timeout: float = 60) -> str:
    """Poll `qstat -x -f -F json` (Parsl's own call) until the job reaches state `want`."""
    command = (
        f"for i in $(seq {timeout * 5:.0f}); do "
        f"s=$(qstat -x -f -F json {job} | python3 -c "
        '\'import json,sys; print(next(iter(json.load(sys.stdin)["Jobs"].values()))'
        '["job_state"])\'); '
        f'[ "$s" = {want} ] && break; sleep 0.2; done; echo $s'
    )
    return ssh(LAB_DIR, site, f"bash -lc {shlex.quote(command)}").strip()


def _pbs(site: str, command: str) -> str:
    """A command in the site user's login shell (PBS's commands are on its PATH there)."""
    return ssh(LAB_DIR, site, f"bash -lc {shlex.quote(command)}", timeout=90)


@pytest.mark.lab
def test_qsub_qstat_qdel_on_two_pbs_sites_at_once(pbs_lab: LabState) -> None:
    ids = {site: _pbs(site, "qsub -- /bin/sleep 300").strip() for site in ("lab1", "lab3")}
    # Each server counts its own jobs from 0 and names itself.
    assert ids["lab1"].endswith(".lab1-login") and ids["lab3"].endswith(".lab3-login")
    for site, job in ids.items():
        assert _wait_state(site, job, "R") == "R"
        _pbs(site, f"qdel {job}")
        assert _wait_state(site, job, "F") == "F"  # job history: Parsl's provider needs it


@pytest.mark.lab
def test_two_chunk_scatter_job_runs_on_both_moms(pbs_lab: LabState) -> None:
    script = "sort -u $PBS_NODEFILE > scatter.out; echo $PBS_QUEUE >> scatter.out"
    job = _pbs(
        "lab1",
        f"qsub -q debug -l select=2:ncpus=1 -l place=scatter -- /bin/sh -c {shlex.quote(script)}",
    ).strip()
    assert _wait_state("lab1", job, "F") == "F"
    out = _pbs("lab1", "cat scatter.out; rm -f scatter.out STDIN.*").split()
    assert out == ["lab1-c1", "lab1-c2", "debug"]  # written through the shared home


@pytest.mark.lab
def test_debug_queue_refuses_a_walltime_over_its_limit(pbs_lab: LabState) -> None:
    over = "qsub -q debug -l walltime=01:00:00 -- /bin/true; echo exit=$?"
    out = ssh(LAB_DIR, "lab3", f"bash -lc {shlex.quote(over)} 2>&1")
    assert "violates queue and/or server resource limits" in out and "exit=0" not in out, out
    within = "qsub -q debug -l walltime=00:20:00 -- /bin/true"
    job = _pbs("lab3", within).strip()
    assert _wait_state("lab3", job, "F") == "F"


@pytest.mark.lab
def test_slurm_site_next_to_pbs_sites_still_runs_jobs(pbs_lab: LabState) -> None:
    done = sbatch_and_wait(LAB_DIR, "lab2", "compute", 2)
    assert {host for _, host in done} <= {"lab2-c1", "lab2-c2"} and len(done) == 2


@pytest.fixture(scope="module")
def project(pbs_lab: LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project provisioned (`pwgen provision`) on lab1 (PBS) and lab2 (Slurm)."""
    path = tmp_path_factory.mktemp("project")
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())["sites"][:2]
    (path / "sites.yaml").write_text(yaml.safe_dump({"sites": sites}))
    pwgen_provision(path, "--sites", "sites.yaml", "--known-hosts", str(LAB_DIR / "known_hosts"))
    return path


@pytest.mark.lab
def test_provision_reads_queues_and_node_shapes_from_real_pbs(project: Path) -> None:
    facts = json.loads((project / ".pwgen" / "facts" / "lab1.json").read_text())
    assert (facts["scheduler"], facts["scheduler_version"]) == ("pbspro", "23.06.06")
    queues = {queue["name"]: queue for queue in facts["partitions"]}
    assert set(queues) == {"workq", "debug"} and facts["warnings"] == []
    assert queues["workq"]["default"] and not queues["debug"]["default"]
    assert queues["workq"]["max_time_seconds"] is None  # no limit set on workq
    assert (queues["debug"]["max_time"], queues["debug"]["max_time_seconds"]) == ("00:30:00", 1800)
    for queue in queues.values():  # each mom reports the machine it runs on
        assert (queue["nodes"], queue["cpus_per_node"]) == (2, os.cpu_count())
        assert queue["memory_mb_per_node"] > 0


@pytest.mark.lab
def test_multisite_example_runs_on_a_pbs_and_a_slurm_site(project: Path) -> None:
    example = str(REPO / "examples" / "multisite.py")
    done = run_pwgen("run", example, "--sites", "sites.yaml", "--", "6", cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("lab1", "lab2"):
        for x in range(6):
            assert f"{label}: square({x}) = {x * x} on {label}-c" in done.stdout
    run_dir = max((project / ".pwgen" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert "SSHPBSProProvider(" in (run_dir / "parsl_config.py").read_text()
    # The run's PBS block was a real job, and the run's end qdel'ed it: PBS signals it,
    # waits up to the queue's kill_delay (10 s), then lists it as finished.
    history = json.loads(_pbs("lab1", "qstat -x -f -F json"))["Jobs"]
    blocks = [job_id for job_id, job in history.items() if "parsl" in job["Job_Name"]]
    assert blocks, history
    for job_id in blocks:
        assert _wait_state("lab1", job_id, "F") == "F"
    history = json.loads(_pbs("lab1", "qstat -x -f -F json"))["Jobs"]
    # SIGTERM from qdel: the job's shell exits 128+15, or PBS reports 256+15 itself.
    assert {history[job_id]["Exit_status"] for job_id in blocks} <= {128 + 15, 256 + 15}
    assert "process_worker_pool" not in _pbs("lab1", f"ps -u {PREFIX}u1 -o args=")


def _mounts_naming(text: str) -> list[str]:
    """Mounts of any mount namespace on this machine whose line names `text`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines = Path(f"/proc/{entry}/mountinfo").read_text().splitlines()
            except OSError:
                continue
            found |= {line for line in lines if text in line}
    return sorted(found)


def _pbs_processes(prefix: Path) -> list[int]:
    """Processes running an OpenPBS program of this build (daemons, qsub's daemon)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                exe = os.readlink(f"/proc/{entry}/exe")
            except OSError:
                continue
            if exe.startswith(f"{prefix}/") and alive(int(entry)):
                found.append(int(entry))
    return found


def _var_tmp_leftovers() -> list[str]:
    return sorted(name for name in os.listdir("/var/tmp") if name.startswith(VAR_TMP_NAMES))


@pytest.mark.lab
def test_down_leaves_no_pbs_process_mount_or_file(
    pbs_lab: LabState, build: PbsBuild, project: Path
) -> None:
    stop_masters(project, ["lab1", "lab2"])
    segments = _postgres_segments()  # the two datastores' own, before down
    before = _var_tmp_leftovers()
    # A running job, and qsub's background daemon (no -f) left behind on both sites.
    for site in ("lab1", "lab3"):
        _pbs(site, "qsub -- /bin/sleep 300; qstat -x")
    netns = [node.netns for site in pbs_lab.sites for node in site.nodes]
    pids = [pid for found in netns_pids(netns).values() for pid in found]
    assert _pbs_processes(build.prefix)
    down = lab_cli("down", "--state-dir", str(LAB_DIR))
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if alive(pid)] == []
    assert _pbs_processes(build.prefix) == []
    assert _mounts_naming(str(LAB_DIR)) == [] and _mounts_naming(f"{PREFIX}-vartmp") == []
    assert _var_tmp_leftovers() == before
    assert _postgres_segments() <= segments - 2  # both datastores shut down cleanly
    if not pbs.bind_targets_in_use():  # no other lab's PBS node
        assert not pbs.CONF_TARGET.exists() and not pbs.HOME_TARGET.exists()
    assert flux.is_built(build.prefix, build.sha256)  # per machine: kept for later labs

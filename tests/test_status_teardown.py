"""`pwgen status` and `pwgen teardown`: runs, sites, and the clean-up after a crashed run.

Offline: runs read from manifests and Parsl's run dirs (finished, crashed, running,
pid reused, unreadable, starting, no manifest at all), processes attributed to a run
by an open file or their cwd, the site probe's output, an unreachable site.

Lab (marked `lab`, root; prefix pwst, 10.234.0.0/16, one site with 2 compute nodes):
`pwgen run` of a 300 s task is killed with -9 once the worker pool runs on the site;
status then reports the run crashed, its block RUNNING and its master, forward, relay
and cert copy alive; teardown removes everything here and there; a second teardown
does nothing.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PWGEN, run_pwgen
from lab_helpers import (
    killed_with_interchanges_held,
    on_project_site,
    project_ssh,
    provisioned_lab,
    wait_for,
)

from pwgen.layout import StateLayout
from pwgen.sites import Site, load_sites
from pwgen.ssh.command import Master
from pwgen.status import (
    describe_run,
    gather_status,
    list_runs,
    parse_probe,
    print_status,
    probe_script,
    scan_processes,
    status_json,
)
from pwgen.teardown import action_script, mark_torn_down, print_teardown, teardown
from pwgen.teardown import script as teardown_script
from pwgen.teardown.script import CLEANUP_SCRIPT

PREFIX, SUBNET = "pwst", "10.234.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-status-lab"
UUID = "0c3e4f0a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


# --- offline ---------------------------------------------------------------------------


def _run_dir(state: Path, run_id: str, manifest: dict[str, object] | None = None) -> Path:
    path = state / "runs" / run_id
    path.mkdir(parents=True)
    (path / "runinfo").mkdir()
    if manifest is not None:
        (path / "manifest.json").write_text(json.dumps({"run_id": run_id, **manifest}))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _finished(exit_code: int, started: float) -> dict[str, object]:
    return {
        "workflow": "/p/wf.py",
        "sites": [{"label": "lab1", "scheduler": "slurm"}],
        "started": started,
        "finished": started + 12.5,
        "exit_code": exit_code,
    }


def test_runs_from_manifests_and_run_dirs(tmp_path: Path) -> None:
    state = tmp_path / ".pwgen"
    now = time.time()
    _run_dir(state, "20260101-000001-aaaaaa", _finished(0, now - 500))
    _run_dir(state, "20260101-000002-bbbbbb", _finished(1, now - 400))
    _run_dir(state, "20260101-000003-cccccc", _finished(130, now - 300))
    unfinished = {"workflow": "/p/wf.py", "sites": [{"label": "lab1"}], "finished": None}
    _run_dir(state, "20260101-000004-dddddd", {**unfinished, "started": now, "pid": _dead_pid()})
    _run_dir(state, "20260101-000005-eeeeee", {**unfinished, "started": now, "pid": os.getpid()})
    # Our pid, but our process started long after that run: a reused pid.
    _run_dir(state, "20260101-000006-ffffff", {**unfinished, "started": 1.0, "pid": os.getpid()})
    torn = {**unfinished, "started": now - 50, "torn_down": now}
    _run_dir(state, "20260101-000007-000000", torn)
    broken = _run_dir(state, "20260101-000008-111111")
    (broken / "manifest.json").write_text("{not json")

    # Killed -9 before writing a manifest: Parsl's run dir says what it left on the site.
    crashed = _run_dir(state, "20260101-000009-222222")
    numbered = crashed / "runinfo" / "000"
    (numbered / "lab1").mkdir(parents=True)
    (numbered / "submit_scripts").mkdir()
    (numbered / "parsl.log").write_text(f"x DEBUG: config\nx INFO: Run id is: {UUID}\n")
    (numbered / "lab1" / "interchange.log").write_text(
        "x INFO: Bound to port 54321 for incoming worker connections\n"
    )
    job = "parsl.lab1.block-0.1795532170.895101"
    (numbered / "submit_scripts" / job).write_text(
        f"process_worker_pool.py --port=54321 --logdir=/scratch/{UUID}/lab1 --x=1\n"
    )
    (state / "facts").mkdir()
    (state / "facts" / "lab1.json").write_text(
        json.dumps({"scheduler": "slurm", "workdir": "/w", "parsl_version": "2026.1.1"})
    )

    runs = {run.run_id: run for run in list_runs(state, processes=[])}
    states = {run_id[-6:]: run.state for run_id, run in runs.items()}
    assert states == {
        "aaaaaa": "ok",
        "bbbbbb": "failed",
        "cccccc": "interrupted",
        "dddddd": "crashed",
        "eeeeee": "running",
        "ffffff": "crashed",
        "000000": "crashed, torn down",
        "111111": "crashed",
        "222222": "crashed",
    }
    ok = runs["20260101-000001-aaaaaa"]
    assert ok.duration == pytest.approx(12.5)
    assert ok.exit_code == 0 and ok.labels == ["lab1"] and ok.workflow == "/p/wf.py"
    assert ok.remote == {}  # a finished run's site details are not read
    assert "unreadable manifest" in (runs["20260101-000008-111111"].error or "")

    run = runs["20260101-000009-222222"]
    assert run.labels == ["lab1"] and run.workflow is None
    assert run.parsl_run_ids == [UUID]
    assert run.started == time.mktime(time.strptime("20260101-000009", "%Y%m%d-%H%M%S"))
    site = run.remote["lab1"]
    assert site.port == 54321 and site.scheduler == "slurm" and site.job_names == [job]
    assert site.site_dirs == [f"/w/{UUID}/lab1", f"/scratch/{UUID}/lab1"]
    assert run.unfinished and not run.alive

    # Newest first.
    assert [r.run_id for r in list_runs(state, processes=[])][:2] == [
        "20260101-000005-eeeeee",
        "20260101-000004-dddddd",
    ]

    # Teardown marks it; a run killed before its manifest gets a minimal one.
    mark_torn_down(crashed, run)
    manifest = json.loads((crashed / "manifest.json").read_text())
    assert manifest["crashed"] is True and manifest["torn_down"] >= now
    assert manifest["sites"] == [{"label": "lab1"}] and manifest["finished"] is None
    again = describe_run(crashed, StateLayout(state), [])
    assert again.state == "crashed, torn down" and not again.unfinished


def test_a_new_run_dir_is_starting(tmp_path: Path) -> None:
    path = tmp_path / ".pwgen" / "runs" / "20260101-000001-aaaaaa"
    path.mkdir(parents=True)  # preflight: no runinfo/ yet, nothing holds its files
    state = StateLayout(tmp_path / ".pwgen")
    assert describe_run(path, state, []).state == "starting"
    assert describe_run(path, state, [], now=time.time() + 3600).state == "crashed"


def test_processes_are_attributed_to_runs(tmp_path: Path) -> None:
    runs = tmp_path / ".pwgen" / "runs"
    log_dir = runs / "20260101-000001-aaaaaa" / "runinfo" / "000" / "lab1"
    log_dir.mkdir(parents=True)
    pool_dir = runs / "20260101-000002-bbbbbb" / "runinfo" / "000" / "local"
    pool_dir.mkdir(parents=True)
    reader_dir = runs / "20260101-000003-cccccc"
    (reader_dir / "runinfo").mkdir(parents=True)
    (reader_dir / "parsl.log").write_text("x\n")
    writer = (
        "import sys, time\nf = open(sys.argv[1], 'a')\nprint('ready', flush=True)\ntime.sleep(60)"
    )
    procs = [
        # Writes into a run, like the DataFlowKernel: that run's controller.
        subprocess.Popen(
            [sys.executable, "-c", writer, str(log_dir / "parsl.log")],
            stdout=subprocess.PIPE,
            text=True,
        ),
        # A local worker pool names its log dir.
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; time.sleep(60)",
                "process_worker_pool.py",
                f"--logdir={pool_dir}",
            ]
        ),
        # Only reads a run's log: not that run's.
        subprocess.Popen(["tail", "-f", str(reader_dir / "parsl.log")], stdout=subprocess.DEVNULL),
    ]
    try:
        assert procs[0].stdout is not None and procs[0].stdout.readline() == "ready\n"
        assert wait_for(lambda: len(scan_processes(runs)) == 2)
        found = {proc.pid: proc for proc in scan_processes(runs)}
        assert (found[procs[0].pid].run_id, found[procs[0].pid].kind) == (
            "20260101-000001-aaaaaa",
            "controller",
        )
        assert (found[procs[1].pid].run_id, found[procs[1].pid].kind) == (
            "20260101-000002-bbbbbb",
            "parsl",
        )
        assert procs[2].pid not in found and os.getpid() not in found
        states = {run.run_id: run.state for run in list_runs(tmp_path / ".pwgen")}
        assert states["20260101-000001-aaaaaa"] == "running"
        assert states["20260101-000003-cccccc"] == "crashed"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert scan_processes(runs) == []


def test_probe_output_is_parsed() -> None:
    output = "\n".join(
        [
            "Welcome to the cluster",
            "user|alice|1001",
            "job|17|parsl.lab1.block-0.1795532170.895101|RUNNING",
            "job|18|interactive|PENDING",
            "proc|4242  /env/bin/python /env/bin/pwgen-relay --listen 10.0.0.1:54130 "
            "--target 127.0.0.1:54130 --pidfile /w/u/lab1/relay.pid",
            "proc|4343  /env/bin/python /env/bin/process_worker_pool.py --logdir=/w/u/lab1",
            "listen|0100007F:D3F2|1001",
            "certs|/w/u/lab1",
            "end|",
        ]
    )
    probe = parse_probe(output)
    assert probe.ok and probe.user == "alice" and probe.uid == 1001
    assert [(job.job_id, job.state, job.active) for job in probe.jobs] == [
        ("17", "RUNNING", True),
        ("18", "PENDING", True),
    ]
    assert [relay.pid for relay in probe.relays] == [4242]
    assert [pool.pid for pool in probe.pools] == [4343]
    assert probe.loopback == [(54258, 1001)]
    assert probe.cert_dirs == ["/w/u/lab1"]
    pbs = parse_probe("user|bob|7\njob|3.pbs|parsl.x.block-0.1.2|R\njob|4.pbs|y|F\nend|", "pbspro")
    assert [(job.state, job.active) for job in pbs.jobs] == [("RUNNING", True), ("FINISHED", False)]
    truncated = parse_probe("user|alice|1001\njob|17|parsl.a.block-0.1.2|RUNNING\n")
    assert not truncated.ok and truncated.error


@pytest.mark.parametrize("scheduler", ["slurm", "pbspro"])
def test_remote_scripts_are_valid_bash(scheduler: str) -> None:
    scripts = [
        probe_script(scheduler, ["/w/it's here/lab1", "/w/u/lab1"]),
        action_script(
            scheduler,
            ["17", "18"],
            [(4242, "/w/u/lab1/relay.pid")],
            ["/w/u/lab1/certificates"],
            [(4343, "--logdir=/w/u/lab1")],
        ),
    ]
    for script in scripts:
        done = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# Stand-ins (the real cancel is tested on real Slurm and OpenPBS: test_teardown_after_a_
# run_killed_with_sigkill here, test_status_shows_and_teardown_cancels_a_killed_runs_pbs_job
# in test_pbs_run_lab.py): a scheduler that answers "already completing" to the cancel and
# lists the job once more, a race neither can be made to show on demand.
FAKE_CANCEL = """\
#!/bin/sh
echo "$*" >> "$FAKE_LOG"
echo "cancel: error on job id $2: already completing" >&2
"""

# Job $1 (the first id) is listed as queued once (the first look after the cancel),
# then finishing; another job of the user stays queued all along.
FAKE_LISTING = {
    "squeue": """\
#!/bin/sh
echo "$*" >> "$FAKE_LOG.list"
state=COMPLETING
if [ "$(wc -l < "$FAKE_LOG.list")" -le 1 ]; then state=RUNNING; fi
echo "$FIRST $state"
echo "${FIRST}0 RUNNING"
""",
    "qselect": """\
#!/bin/sh
echo "$*" >> "$FAKE_LOG.list"
if [ "$(wc -l < "$FAKE_LOG.list")" -le 1 ]; then echo "$FIRST"; fi
echo "${FIRST}0"
""",
}


def _sleeper(*words: str) -> "subprocess.Popen[bytes]":
    """A process whose command line holds `words` (as a relay's or a pool's would)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *words])


@pytest.mark.parametrize(
    ("scheduler", "cancel", "listing", "jobs"),
    [
        ("slurm", "scancel", "squeue", ["17", "18"]),
        ("pbspro", "qdel", "qselect", ["7.pbs", "8.pbs"]),
    ],
)
def test_action_script_stops_only_the_runs_processes(
    tmp_path: Path, scheduler: str, cancel: str, listing: str, jobs: list[str]
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    for name, text in ((cancel, FAKE_CANCEL), (listing, FAKE_LISTING[listing])):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    site_dir = tmp_path / "it's here" / "lab1"
    (site_dir / "certificates").mkdir(parents=True)
    (site_dir / "certificates" / "key").write_text("")
    pidfile = site_dir / "relay.pid"
    pidfile.write_text("")
    relay = _sleeper("--pidfile", str(pidfile))
    pool = _sleeper(f"--logdir={site_dir}")
    # Another run's pool: its --logdir starts like ours; a pid that is no longer ours.
    other = _sleeper(f"--logdir={site_dir}2")
    try:
        script = action_script(
            scheduler,
            jobs,
            [(relay.pid, str(pidfile))],
            [str(site_dir / "certificates")],
            [(pool.pid, f"--logdir={site_dir}"), (other.pid, f"--logdir={site_dir}")],
        )
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "FIRST": jobs[0],
        }
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"cancel_msg|cancel: error on job id {jobs[1]}: already completing",
            "left|",
            f"stopped|{relay.pid}",
            f"stopped|{pool.pid}",
            f"removed|{site_dir / 'certificates'}",
            "end|",
        ]
        assert log.read_text() == " ".join(jobs) + "\n"
        assert len((tmp_path / "log.list").read_text().splitlines()) == 2  # waited once
        assert relay.wait(5) == pool.wait(5) == -signal.SIGTERM
        assert other.poll() is None
        assert not pidfile.exists() and not (site_dir / "certificates").exists()
    finally:
        for proc in (relay, pool, other):
            proc.kill()
            proc.wait()


def test_cleanup_script_is_valid_bash() -> None:
    done = subprocess.run(
        ["bash", "-n", str(Path(teardown_script.__file__).parent / CLEANUP_SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_an_unreachable_site_is_reported_not_raised(tmp_path: Path) -> None:
    state = tmp_path / ".pwgen"
    (state / "ssh").mkdir(parents=True)
    # Loopback port 1: refused at once (no address outside loopback is ever contacted).
    (state / "ssh" / "config").write_text(
        f"Host down\n    HostName 127.0.0.1\n    Port 1\n"
        f"Host *\n    ControlPath {tmp_path}/cm-%C\n    BatchMode yes\n"
        f"    UserKnownHostsFile {tmp_path}/known_hosts\n    StrictHostKeyChecking yes\n"
    )
    sites = [
        Site(label="down", scheduler="slurm", host="127.0.0.1", port=1),
        Site(label="here", scheduler="local"),
    ]
    started = time.monotonic()
    report = gather_status(state, sites)
    assert time.monotonic() - started < 10
    down, here = report.sites
    assert down.reachable is False and down.error and "unreachable" in down.error
    assert down.facts is None and down.facts_error and "pwgen provision" in down.facts_error
    assert down.master_pid is None
    assert here.local and here.reachable is None
    json.dumps(status_json(report))
    print_status(report)
    clean = teardown(state)
    assert clean.actions == [] and clean.clean


def test_cli_status_and_teardown_on_an_empty_project(tmp_path: Path) -> None:
    listed = run_pwgen("--help", cwd=tmp_path)
    if "teardown" not in listed.stdout or "status" not in listed.stdout:
        pytest.skip("pwgen status/teardown are not wired into pwgen/cli.py yet")
    done = run_pwgen("status", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == []
    done = run_pwgen("teardown", cwd=tmp_path)
    assert done.returncode == 0 and "nothing to tear down" in done.stdout, done.stderr


# --- lab ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose one lab site (2 compute nodes) is provisioned."""
    path = tmp_path_factory.mktemp("project")
    with provisioned_lab(PREFIX, SUBNET, LAB_DIR, path, 1, 2, provision_args=["--json"]):
        yield path


def _on_site(project: Path, command: str) -> str:
    """A command on the login node as the site user, never starting a master."""
    return on_project_site(project, "lab1", command, Master.JOIN)


def _live_on_site(project: Path) -> str:
    """The site user's live (non-zombie) processes, all nodes (the lab shares a pid space)."""
    return _on_site(project, "ps -u \"$(id -un)\" -o stat=,args= | awk '$1 !~ /^Z/'")


def _master_alive(project: Path) -> bool:
    return project_ssh(project).master_running("lab1")


def _start_run(project: Path, name: str) -> tuple["subprocess.Popen[bytes]", Path]:
    """`pwgen run` of a 300 s task on lab1, in the background; (process, output file)."""
    workflow = project / "long.py"
    workflow.write_text(
        "from parsl import python_app\n"
        "@python_app(executors=['lab1'])\n"
        "def nap():\n    import time; time.sleep(300)\n\n"
        "f = nap()\nprint('submitted', flush=True)\nf.result()\n"
    )
    # Output to a file: the orphaned interchange keeps pwgen's stdout open after -9.
    out = project / f"{name}.out"
    with open(out, "w") as handle:
        proc = subprocess.Popen(
            [str(PWGEN), "run", str(workflow), "--sites", str(LAB_DIR / "sites.yaml")],
            cwd=project,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return proc, out


def _submitted(out: Path) -> bool:
    return "submitted" in out.read_text()


@pytest.mark.lab
def test_teardown_after_a_run_killed_with_sigkill(project: Path) -> None:
    state = project / ".pwgen"
    sites = load_sites(LAB_DIR / "sites.yaml")
    proc, out = _start_run(project, "crash")
    try:
        assert wait_for(lambda: _submitted(out), timeout=60), out.read_text()
        assert wait_for(lambda: "process_worker_pool" in _live_on_site(project), timeout=60)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        raise
    with killed_with_interchanges_held(proc):
        _teardown_after_sigkill(project, state, sites)


def _teardown_after_sigkill(project: Path, state: Path, sites: list[Site]) -> None:
    """What status shows of the killed run, and all that teardown then stops and removes."""
    report = gather_status(state, sites)
    (run,) = [r for r in report.runs]
    assert run.state == "crashed", run
    (site,) = report.sites
    assert site.reachable and site.master_pid is not None, site
    (block,) = site.blocks
    assert block.state == "RUNNING" and block.run_id == run.run_id
    (tunnel,) = site.tunnels
    assert tunnel.run_id == run.run_id and tunnel.forward and tunnel.relay_pid and tunnel.certs
    here = [p for p in report.controller if p.run_id == run.run_id]
    assert [p.kind for p in here if p.kind == "interchange"] == ["interchange"]
    print_status(report)
    cert_dirs = [f"{d}/certificates" for d in run.remote["lab1"].site_dirs]
    assert _on_site(project, f"ls -d {' '.join(cert_dirs)} 2>/dev/null || true").strip()

    done = teardown(state)
    print_teardown(done)
    assert done.clean and done.torn_down == [run.run_id], done
    what = " | ".join(action.what for action in done.actions)
    for expected in (
        "stopped interchange",
        f"cancelled job {block.job_id}",
        "stopped relay",
        "removed cert and staging copies",
        "stopped ssh master",
    ):
        assert expected in what, what

    # Nothing left: here, on the site, no master.
    assert [p for p in scan_processes(state / "runs") if p.run_id == run.run_id] == []
    assert _on_site(project, 'squeue -h -u "$(id -un)"') == ""
    live = _live_on_site(project)
    assert "pwgen-relay" not in live and "process_worker_pool" not in live, live
    assert _on_site(project, f"ls -d {' '.join(cert_dirs)} 2>/dev/null || true") == ""
    assert not _master_alive(project)
    manifest = json.loads((Path(run.path) / "manifest.json").read_text())
    assert manifest["crashed"] is True and manifest["torn_down"]
    after = gather_status(state, sites)
    assert after.runs[0].state == "crashed, torn down"
    assert after.sites[0].blocks == [] and after.sites[0].master_pid is None

    again = teardown(state)
    assert again.actions == [] and again.torn_down == [] and again.clean
    assert not _master_alive(project)


@pytest.mark.lab
def test_teardown_leaves_a_live_run_alone(project: Path) -> None:
    """Two runs share lab1 and its master; the one killed -9 is torn down, the other runs on."""
    state = project / ".pwgen"
    sites = load_sites(LAB_DIR / "sites.yaml")
    before = {run.run_id for run in list_runs(state)}
    live_proc, live_out = _start_run(project, "live")
    crash_proc: subprocess.Popen[bytes] | None = None
    try:
        assert wait_for(lambda: _submitted(live_out), timeout=60), live_out.read_text()
        crash_proc, crash_out = _start_run(project, "crash2")
        assert wait_for(lambda: _submitted(crash_out), timeout=60), crash_out.read_text()

        def both_running() -> bool:
            blocks = gather_status(state, sites).sites[0].blocks
            return [job.state for job in blocks] == ["RUNNING", "RUNNING"]

        assert wait_for(both_running, timeout=60)
        with killed_with_interchanges_held(crash_proc):
            runs = {run.run_id: run for run in list_runs(state) if run.run_id not in before}
            (live_id,) = [run_id for run_id, run in runs.items() if run.state == "running"]
            (crashed_id,) = [run_id for run_id, run in runs.items() if run.state == "crashed"]
            done = teardown(state)
        print_teardown(done)
        assert done.clean and done.torn_down == [crashed_id], done
        assert f"run {live_id} is running: left alone" in done.notes
        assert any(f"kept: used by running run {live_id}" in note for note in done.notes)
        assert all(action.run_id != live_id for action in done.actions), done.actions
        what = " | ".join(action.what for action in done.actions)
        assert "cancelled forward" in what and "stopped ssh master" not in what, what

        # The live run is untouched: its block, tunnel and master are up, and it still
        # tears itself down on Ctrl-C.
        report = gather_status(state, sites)
        states = {run.run_id: run.state for run in report.runs}
        assert states[live_id] == "running" and states[crashed_id] == "crashed, torn down"
        (site,) = report.sites
        assert [(job.state, job.run_id) for job in site.blocks] == [("RUNNING", live_id)]
        (tunnel,) = site.tunnels
        assert tunnel.run_id == live_id and tunnel.forward and tunnel.relay_pid and tunnel.certs
        assert _master_alive(project)
        live_proc.send_signal(signal.SIGINT)
        assert live_proc.wait(timeout=60) == 130, live_out.read_text()
    finally:
        for proc in (live_proc, crash_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    assert teardown(state).actions == []
    assert _on_site(project, 'squeue -h -u "$(id -un)"') == ""
    assert not _master_alive(project)

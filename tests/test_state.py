"""The working state's layout (pwgen.layout) and the run manifest (pwgen.manifest).

Manifests as the code before `RunManifest` wrote them (a dataclass dumped with
`asdict`, an old flux run's `site_side` block (kept as an unknown key), teardown's
`crashed`/`torn_down` marks, teardown's minimal manifest) still load, and status
reads them as before; a broken manifest is one error line naming the file.
"""

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pwgen.layout import DEFAULT_STATE_DIR, StateLayout
from pwgen.manifest import (
    ManifestError,
    RunManifest,
    RunState,
    finish_manifest,
    load_manifest,
    new_run_dir,
    start_manifest,
    write_manifest,
)
from pwgen.status import describe_run, list_runs, status_json
from pwgen.status.report import StatusReport

PWGEN = Path(__file__).resolve().parent.parent / "pwgen"


@dataclass
class OldRunRecord:
    """`pwgen.run.RunRecord` as it was before RunManifest: old manifests look like this."""

    run_id: str
    workflow: str
    args: list[str]
    sites: list[dict[str, Any]]
    parsl_version: str
    python_version: str
    pwgen_version: str = "0.1.0"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    exit_code: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    site_versions: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    pid: int = field(default_factory=os.getpid)
    options: dict[str, Any] = field(default_factory=dict)
    unavailable_sites: dict[str, str] = field(default_factory=dict)
    failover: dict[str, Any] = field(default_factory=dict)


FACTS = {"scheduler": "slurm", "workdir": "/w", "env": {"hash": "abc", "path": "/e"}}


def _old_record(run_id: str) -> dict[str, Any]:
    record = OldRunRecord(
        run_id=run_id,
        workflow="/p/wf.py",
        args=["7"],
        sites=[{"label": "lab1", "scheduler": "slurm", "host": "10.0.0.5"}],
        parsl_version="2026.1.1",
        python_version="3.11.2",
        site_versions={"lab1": ["2026.1.1", "3.11"]},
        facts={"lab1": FACTS},
        options={"failover": True, "retries": 0},
        failover={"moves": 0, "routes": {}, "presumed_lost": 0, "abandoned": {}},
    )
    record.timings["load"] = 1.5
    record.finished, record.exit_code = record.started + 3, 0
    return asdict(record)


def _write(state: Path, run_id: str, data: dict[str, Any] | str) -> Path:
    run_dir = StateLayout(state).run(run_id).path
    (run_dir / "runinfo").mkdir(parents=True)  # Parsl started: not "starting"
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    (run_dir / "manifest.json").write_text(text)
    return run_dir


def test_the_layout_names_every_path_of_the_state() -> None:
    state = StateLayout(Path("/p/.pwgen"))
    assert StateLayout().root == DEFAULT_STATE_DIR == Path(".pwgen")
    assert state.facts_file("lab1") == Path("/p/.pwgen/facts/lab1.json")
    assert state.ssh_config == Path("/p/.pwgen/ssh/config")
    assert state.known_hosts == Path("/p/.pwgen/ssh/known_hosts")
    assert state.wheelhouse_dir == Path("/p/.pwgen/wheelhouse")
    assert state.lab_dir == Path("/p/.pwgen/lab")
    assert state.runinfo_dir == Path("/p/.pwgen/runinfo")
    run = state.run("20260101-000001-aaaaaa")
    assert run.run_id == "20260101-000001-aaaaaa"
    assert run.manifest == Path("/p/.pwgen/runs/20260101-000001-aaaaaa/manifest.json")
    assert (run.config.name, run.runinfo.name, run.log.name, run.monitoring_db.name) == (
        "parsl_config.py",
        "runinfo",
        "pwgen.log",
        "monitoring.db",
    )


def test_only_the_layout_spells_the_state_dir() -> None:
    spelled = re.compile(r"""Path\(\s*["']\.pwgen|["']\.pwgen/""")
    offenders = [
        str(path.relative_to(PWGEN))
        for path in PWGEN.rglob("*.py")
        if path.name != "layout.py"
        for line in path.read_text().splitlines()
        if spelled.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def test_old_manifests_load_and_read_as_before(tmp_path: Path) -> None:
    state = tmp_path / ".pwgen"
    plain = _old_record("20260101-000001-aaaaaa")
    flux = {
        **_old_record("20260101-000002-bbbbbb"),
        "exit_code": 130,
        "site_side": {
            "site": "lab1",
            "remote_dir": "/w/20260101-000002-bbbbbb",
            "command": "cd /w/x && exec python pwgen_site_run.py wf.py",
            "files": ["wf.py", "parsl_config.py", "pwgen_site_run.py"],
        },
    }
    crashed = {**_old_record("20260101-000003-cccccc"), "finished": None, "exit_code": None}
    torn = {**crashed, "run_id": "20260101-000004-dddddd", "crashed": True, "torn_down": 5.0}
    minimal = {  # teardown's manifest for a run killed before it wrote one
        "run_id": "20260101-000005-eeeeee",
        "workflow": None,
        "sites": [{"label": "lab1"}],
        "started": 1.0,
        "finished": None,
        "exit_code": None,
        "crashed": True,
        "torn_down": 6.0,
    }
    for data in (plain, flux, crashed, torn, minimal):
        _write(state, data["run_id"], data)

    loaded = load_manifest(state / "runs" / plain["run_id"])
    assert loaded is not None and loaded.labels == ["lab1"] and loaded.facts["lab1"] == FACTS
    assert loaded.timings == {"load": 1.5} and not loaded.crashed
    side = load_manifest(state / "runs" / flux["run_id"])
    assert side is not None and (side.model_extra or {})["site_side"] == flux["site_side"]
    # A rewrite keeps everything the file held.
    write_manifest(state / "runs" / flux["run_id"], side)
    again = json.loads((state / "runs" / flux["run_id"] / "manifest.json").read_text())
    assert {key: again[key] for key in flux} == flux

    runs = {run.run_id[-6:]: run for run in list_runs(state, processes=[])}
    assert {key: run.state for key, run in runs.items()} == {
        "aaaaaa": "ok",
        "bbbbbb": "interrupted",
        "cccccc": "running",  # our pid: started before this process
        "dddddd": "crashed, torn down",
        "eeeeee": "crashed, torn down",
    }
    assert runs["aaaaaa"].exit_code == 0 and runs["aaaaaa"].workflow == "/p/wf.py"
    assert runs["eeeeee"].started == 1.0 and runs["eeeeee"].workflow is None
    assert all(run.error is None for run in runs.values())
    # The JSON of `pwgen status --json` spells the states as plain strings.
    report = StatusReport(str(state), None, [], list(runs.values()), [])
    shown = json.loads(json.dumps(status_json(report)))["runs"]
    assert {run["run_id"][-6:]: run["state"] for run in shown} == {
        key: str(run.state) for key, run in runs.items()
    }
    assert {run["state"] for run in shown} == {"ok", "interrupted", "running", "crashed, torn down"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "unreadable manifest: Expecting property name"),
        ("[1, 2]", "manifest is not a JSON object"),
        ('{"run_id": "x", "exit_code": "zero"}', "invalid manifest: exit_code: "),
        ('{"run_id": "x", "sites": [{"host": "h"}]}', "invalid manifest: sites: "),
        ('{"workflow": "/p/wf.py"}', "invalid manifest: run_id: Field required"),
    ],
)
def test_a_broken_manifest_is_one_line_naming_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    run_dir = _write(tmp_path, "20260101-000001-aaaaaa", text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(run_dir)
    message = str(caught.value)
    assert message.startswith(f"{run_dir / 'manifest.json'}: ") and "\n" not in message
    assert expected in message
    run = describe_run(run_dir, StateLayout(tmp_path), [])
    assert run.state == RunState.CRASHED and run.error == message


def test_a_run_dir_and_its_manifest_from_start_to_finish(tmp_path: Path) -> None:
    run = new_run_dir(tmp_path)
    assert (
        run.path.parent == StateLayout(tmp_path).runs_dir
        and run.path.stat().st_mode & 0o777 == 0o700
    )
    assert load_manifest(run.path) is None
    manifest = start_manifest(run.run_id, Path("wf.py"), ["1"], sites=[{"label": "local"}])
    write_manifest(run.path, manifest)
    written = json.loads(run.manifest.read_text())
    assert written["finished"] is None and written["pid"] == os.getpid()
    assert describe_run(run.path, StateLayout(tmp_path), []).state == RunState.RUNNING
    with manifest.timed("workflow"):
        pass
    with pytest.raises(KeyError), manifest.timed("cleanup"):
        raise KeyError("a step that fails is not timed")
    finish_manifest(run.path, manifest, 1)
    done = load_manifest(run.path)
    assert done == manifest and done.exit_code == 1 and set(done.timings) == {"workflow"}
    assert done.ended_state() == RunState.FAILED
    assert RunManifest(run_id="x", sites=["lab1"]).labels == ["lab1"]  # a bare label

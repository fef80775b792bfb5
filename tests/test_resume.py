"""Checkpoints, resuming and the interchange's guard, without the lab.

- the checkpoint file: cut at every byte or with garbage after it, it reads back the
  whole records before the damage, with a one-line problem, never an exception;
- `ResumeMemoizer` on Parsl's thread pool: identical calls each run, an earlier run's
  results are reused per call, `cache=True` keeps Parsl's meaning, `--rerun-app`;
- the guard: a launcher killed -9 takes its "interchange" down and runs the cleanup;
  a normal exit leaves no watcher behind;
- kill -9 at random moments while manifests and checkpoints are written: they always
  read back (`pwgen status` works);
- a local run killed -9, then `pwgen run --resume`: same output, few tasks run twice.
"""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import PWGEN, assert_one_line_error, run_pwgen

from pwgen.layout import RunLayout, StateLayout
from pwgen.manifest import load_manifest
from pwgen.poll import poll
from pwgen.resume import (
    CheckpointWriter,
    plan_resume,
    read_checkpoint,
)
from pwgen.resume.checkpoint import HEADER, encode_record
from pwgen.status import scan_processes


def _written(path: Path, records: dict[str, Any]) -> bytes:
    writer = CheckpointWriter(path)
    writer.open({})
    for key, value in records.items():
        writer.append(key, value)
    writer.close()
    return path.read_bytes()


def test_a_checkpoint_cut_anywhere_reads_its_whole_records(tmp_path: Path) -> None:
    records = {f"key{i}#0": {"i": i, "text": "x" * i} for i in range(12)}
    data = _written(tmp_path / "checkpoint.log", records)
    assert read_checkpoint(tmp_path / "checkpoint.log").results.keys() == records.keys()
    sizes = [
        len(encode_record(k, pickle.dumps(v, pickle.HIGHEST_PROTOCOL))) for k, v in records.items()
    ]
    boundaries = {len(HEADER) + sum(sizes[:n]) for n in range(len(sizes) + 1)}
    cut = tmp_path / "cut.log"
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        read = read_checkpoint(cut)
        keys = list(read.results)
        assert keys == list(records)[: len(keys)]  # a prefix, in order
        assert len(HEADER) + sum(sizes[: len(keys)]) <= max(size, len(HEADER))
        whole = size <= len(HEADER) or size in boundaries
        assert (read.problem is None) == whole, (size, read.problem)
        if read.problem:
            assert "torn at byte" in read.problem and "\n" not in read.problem


def test_garbage_after_a_checkpoint_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.log"
    data = _written(path, {"a#0": 1, "b#0": 2})
    path.write_bytes(data + os.urandom(64))
    read = read_checkpoint(path)
    assert read.results.keys() == {"a#0", "b#0"} and "torn" in (read.problem or "")
    path.write_bytes(b"not a checkpoint at all")
    read = read_checkpoint(path)
    assert read.results == {} and "not a pwgen checkpoint" in (read.problem or "")
    assert read_checkpoint(tmp_path / "missing.log").problem is None


def _thread_run(run_dir: Path, earlier: dict[str, bytes], script: Any) -> Any:
    """`script(dfk)` under a thread-pool DFK with pwgen's memoizer; its checkpoint's records."""
    import parsl
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor

    from pwgen.resume.memoizer import ResumeMemoizer

    run_dir.mkdir()
    writer = CheckpointWriter(RunLayout(run_dir).checkpoint)
    memoizer = ResumeMemoizer(writer, earlier, rerun_apps=["never_reused"])
    config = Config(
        executors=[ThreadPoolExecutor(label="t", max_threads=4)],
        memoizer=memoizer,
        run_dir=str(run_dir / "runinfo"),
    )
    dfk = parsl.load(config)
    try:
        result = script(dfk)
    finally:
        dfk.cleanup()
        parsl.clear()
    return result, read_checkpoint(RunLayout(run_dir).checkpoint).results, memoizer.reused


def test_the_memoizer_reuses_results_per_call_not_per_value(tmp_path: Path) -> None:
    from parsl import python_app

    calls = tmp_path / "calls"
    calls.mkdir()

    def counted(name: str, value: int) -> int:
        (calls / f"{name}-{time.monotonic_ns()}").touch()
        return value * 10

    def workflow(dfk: Any) -> list[int]:
        plain = python_app(counted, data_flow_kernel=dfk)
        futures = [plain("plain", 1), plain("plain", 1), plain("plain", 2)]
        results = [f.result() for f in futures]
        cached = python_app(counted, data_flow_kernel=dfk, cache=True)
        first = cached("cached", 3).result()
        results += [first, cached("cached", 3).result()]  # Parsl's cache: runs once

        def never_reused(value: int) -> int:
            (calls / f"rerun-{time.monotonic_ns()}").touch()
            return value

        results.append(python_app(never_reused, data_flow_kernel=dfk)(5).result())
        return results

    def ran(prefix: str) -> int:
        return sum(path.name.startswith(prefix) for path in calls.iterdir())

    results, records, reused = _thread_run(tmp_path / "one", {}, workflow)
    assert results == [10, 10, 20, 30, 30, 5] and reused == 0
    assert (ran("plain"), ran("cached"), ran("rerun")) == (3, 1, 1)
    assert len(records) == 4  # plain x3 (two occurrences of one hash), cached once
    again, records_two, reused = _thread_run(tmp_path / "two", records, workflow)
    assert again == results and reused == 4
    assert (ran("plain"), ran("cached"), ran("rerun")) == (3, 1, 2)  # only never_reused
    assert records_two == records  # carried over: the next resume has them too


WRITER = """
import os, sys, time
from pathlib import Path
from pwgen.manifest import RunManifest, write_manifest
from pwgen.resume import CheckpointWriter
run, workflow = Path(sys.argv[1]), sys.argv[2]
writer = CheckpointWriter(run / "checkpoint.log")
writer.open({})
manifest = RunManifest(run_id=run.name, workflow=workflow, pid=os.getpid(), started=time.time())
write_manifest(run, manifest)
print("ready", flush=True)
i = 0
while True:
    i += 1
    manifest.args = [str(n) for n in range(i % 500)]
    write_manifest(run, manifest)
    writer.append(f"key{i}", "x" * (i % 3000))
"""


def test_kill_9_while_writing_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """A few dozen kill -9 at random moments of manifest and checkpoint writes: the
    files read back, and `--resume` reuses the checkpoint (or says why in one line)."""
    state = StateLayout(tmp_path / ".pwgen")
    runs, workflow = state.runs_dir, tmp_path / "w.py"
    rng = random.Random(19)
    for attempt in range(30):
        run = runs / f"20261205-0000{attempt:02d}-abcdef"
        run.mkdir(parents=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run), str(workflow)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        manifest = load_manifest(run)  # never a ManifestError
        assert manifest is not None and manifest.run_id == run.name
        read = read_checkpoint(run / "checkpoint.log")
        assert read.problem is None or "torn at byte" in read.problem
        plan = plan_resume(state.root, workflow, run.name)
        assert plan.earlier.keys() == read.results.keys()
    shown = run_pwgen("status", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["runs"]) == 10


LOCAL_WORKFLOW = """
import os, sys, time
from parsl import python_app

@python_app(executors=["local"])
def square(x, marks):
    import time
    time.sleep(0.1)
    with open(marks, "a") as out:
        out.write(f"{x}\\n")
    return x * x

marks = os.path.abspath("marks.txt")
total = sum(f.result() for f in [square(i, marks) for i in range(int(sys.argv[1]))])
with open("total.txt", "w") as out:
    out.write(f"{total}\\n")
"""


def test_a_local_run_killed_9_resumes(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(LOCAL_WORKFLOW)
    sites = Path(__file__).parent.parent / "examples" / "sites.local.yaml"
    marks = tmp_path / "marks.txt"
    argv = [str(PWGEN), "run", "wf.py", "--sites", str(sites), "-q"]
    proc = subprocess.Popen([*argv, "--", "80"], cwd=tmp_path, stderr=subprocess.DEVNULL)

    def done() -> int:
        return len(marks.read_text().splitlines()) if marks.exists() else 0

    assert poll(lambda: done() >= 30, 120) is not None
    proc.send_signal(signal.SIGKILL)
    before = set(_ids(marks))  # tasks that ended before the kill
    proc.wait()
    (run_id,) = os.listdir(tmp_path / ".pwgen" / "runs")
    assert poll(
        lambda: "torn down" in _text(tmp_path / ".pwgen/runs" / run_id / "teardown.log"), 20
    )
    stopped = done()
    time.sleep(1)
    assert done() == stopped, "tasks ran after the teardown"
    # Nothing of the run is left here: its pool's workers, manager and tracker went too.
    left = [proc for proc in scan_processes(tmp_path / ".pwgen" / "runs") if proc.run_id == run_id]
    assert left == [], left
    for argv, error in (
        (["wf.py", "--resume", "nope"], "--resume nope: no such run"),
        (["other.py", "--resume", run_id], f"--resume {run_id}: that run ran wf.py, not other.py"),
        (["wf.py", "--resume", run_id, "--no-checkpoint"], "cannot go with --no-checkpoint"),
    ):
        (tmp_path / "other.py").write_text("")
        refused = run_pwgen("run", *argv, "--sites", str(sites), cwd=tmp_path)
        assert_one_line_error(refused, error)
    resumed = run_pwgen(
        "run", "wf.py", "--sites", str(sites), "-q", "--resume", run_id, "--", "80", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stderr
    assert (tmp_path / "total.txt").read_text() == f"{sum(i * i for i in range(80))}\n"
    runs = Counter(_ids(marks))
    assert sorted(runs) == list(range(80))
    # Run again: only the tasks whose results the dead controller never recorded.
    twice = [i for i in before if runs[i] > 1]
    assert len(twice) <= 4, twice  # results on their way at the kill
    assert sum(runs.values()) - 80 <= stopped - len(before) + 4, (len(before), stopped, runs)


def _ids(marks: Path) -> list[int]:
    return [int(line) for line in marks.read_text().split()] if marks.exists() else []


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""

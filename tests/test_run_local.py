"""End to end on the local site: `pwgen run` with real Parsl, and nothing left running."""

import contextlib
import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import PWGEN, REPO, parsl_processes, run_pwgen

from pwgen.poll import poll

pytestmark = pytest.mark.e2e

LOCAL_SITES = REPO / "examples" / "sites.local.yaml"


def _assert_nothing_left_running() -> None:
    poll(lambda: not parsl_processes(), 10, interval=0.2)
    assert parsl_processes() == []


@pytest.fixture(autouse=True)
def _no_parsl_before() -> None:
    assert parsl_processes() == [], "a previous test left Parsl processes"


def _workflow(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "workflow.py"
    path.write_text("import sys\nfrom parsl import bash_app, python_app\n\n" + body)
    return path


def test_hello_example_runs_and_cleans_up(tmp_path: Path) -> None:
    result = run_pwgen(
        "run",
        str(REPO / "examples" / "hello.py"),
        "--sites",
        str(LOCAL_SITES),
        "--",
        "7",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for x in range(7):
        assert f"square({x}) = {x * x}  [worker " in result.stdout
    assert "sum of squares 0..6 = 91" in result.stdout
    assert "hello from " in result.stdout and ", pwgen" in result.stdout
    _assert_nothing_left_running()

    (run_dir,) = (tmp_path / ".pwgen" / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["exit_code"] == 0 and manifest["args"] == ["7"]
    assert [site["label"] for site in manifest["sites"]] == ["local"]
    assert manifest["finished"] >= manifest["started"]
    assert "HighThroughputExecutor(" in (run_dir / "parsl_config.py").read_text()


def test_workflow_args_and_exit_code_pass_through(tmp_path: Path) -> None:
    workflow = _workflow(
        tmp_path,
        "@python_app(executors=['local'])\ndef echo(x):\n    return x\n\n"
        "print('argv', echo(sys.argv[1:]).result())\nsys.exit(3)\n",
    )
    result = run_pwgen(
        "run", str(workflow), "--sites", str(LOCAL_SITES), "--", "a", "--b", cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert "argv ['a', '--b']" in result.stdout
    _assert_nothing_left_running()


def test_failing_workflow_exits_1_with_its_own_traceback(tmp_path: Path) -> None:
    workflow = _workflow(
        tmp_path,
        "@python_app(executors=['local'])\ndef divide(x):\n    return 1 / x\n\n"
        "divide(0).result()\n",
    )
    result = run_pwgen("run", str(workflow), "--sites", str(LOCAL_SITES), cwd=tmp_path)
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    # The user's frames only.
    assert "pwgen/run.py" not in result.stderr and "pwgen_script.py" not in result.stderr
    assert f"pwgen: workflow {workflow} failed" in result.stderr
    _assert_nothing_left_running()


def test_run_with_the_users_edited_config(tmp_path: Path) -> None:
    done = run_pwgen("config", "--sites", str(LOCAL_SITES), "-o", "mine.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    edited = (
        (tmp_path / "mine.py")
        .read_text()
        .replace("cores_per_worker=1.0,", "max_workers_per_node=1,")
    )
    edited = edited.replace("strategy_period=1,", "strategy_period=1, retries=2,")
    assert "max_workers_per_node=1," in edited and "retries=2," in edited
    (tmp_path / "mine.py").write_text(edited)
    workflow = _workflow(
        tmp_path,
        "import parsl\n@python_app(executors=['local'])\ndef one():\n    return 1\n\n"
        "config = parsl.dfk().config\n"
        "print('ran', one().result(), config.executors[0].max_workers_per_node, config.retries,"
        " config.run_dir)\n",
    )
    argv = ["run", str(workflow), "--sites", str(LOCAL_SITES), "--config", "mine.py"]
    result = run_pwgen(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    one, workers, retries, run_dir = result.stdout.split("ran ")[1].split()
    assert (one, workers, retries) == ("1", "1", "2")  # the edited config, its own retries
    run = Path(run_dir).parent
    assert run.parent == tmp_path / ".pwgen" / "runs"
    assert (run / "parsl_config.py").read_text() == edited  # the copy of what ran
    # --retries still wins; a missing config is one line.
    result = run_pwgen(*argv, "--retries", "0", cwd=tmp_path)
    assert result.stdout.split("ran ")[1].split()[2] == "0", result.stderr
    result = run_pwgen(*argv[:4], "--config", "no.py", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip().endswith("no.py: config file not found") or "no.py" in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    _assert_nothing_left_running()


def test_progress_lines_summary_and_json_report(tmp_path: Path) -> None:
    workflow = _workflow(
        tmp_path,
        "import time\n@python_app(executors=['local'])\ndef nap(i):\n"
        "    import time; time.sleep(1); return i\n\n"
        "futures = [nap(i) for i in range(4)]\ntime.sleep(2.5)\n"
        "print('sum', sum(f.result() for f in futures))\n",
    )
    argv = ["run", str(workflow), "--sites", str(LOCAL_SITES), "--json"]
    result = run_pwgen(*argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Not a terminal: plain progress lines on stderr, then the summary.
    progress = [line for line in result.stderr.splitlines() if line.startswith("pwgen: run ")]
    assert len(progress) >= 2, result.stderr
    assert " waiting, 0 moved | local: " in progress[0] and " workers" in progress[0]
    assert progress[-1].endswith(": 4 task(s) done, 0 failed, 0 moved")
    assert "finished after" in progress[-1]
    stdout = result.stdout.splitlines()
    assert stdout[0] == "sum 6"
    report = json.loads(stdout[-1])
    assert (report["done"], report["failed"], report["exit_code"]) == (4, 0, 0)
    assert set(report["sites"]) == {"local"} and report["run_id"] in progress[-1]
    quiet = run_pwgen("run", str(workflow), "--sites", str(LOCAL_SITES), "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and "pwgen: run " not in quiet.stderr, quiet.stderr
    # On a terminal: a table redrawn in place (cursor movements), then the summary.
    terminal, stderr = pty.openpty()
    argv = [str(PWGEN), "run", str(workflow), "--sites", str(LOCAL_SITES)]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr)
    os.close(stderr)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the run has closed the terminal
        while chunk := os.read(terminal, 65536):
            shown += chunk
    assert proc.wait(timeout=120) == 0
    os.close(terminal)
    text = shown.decode(errors="replace")
    assert "blocks running" in text and "\x1b[" in text, text
    assert "4 task(s) done, 0 failed, 0 moved" in text
    _assert_nothing_left_running()


def test_a_misspelt_site_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    workflow = _workflow(
        tmp_path,
        "@python_app(executors=['locl'])\ndef one():\n    return 1\n\none().result()\n",
    )
    result = run_pwgen("run", str(workflow), "--sites", str(LOCAL_SITES), cwd=tmp_path)
    assert result.returncode == 1
    error, summary = result.stderr.strip().splitlines()[-2:]
    assert error == (
        f"pwgen: {workflow}:8: executors=[...] names 'locl', not a site of this run "
        "(did you mean 'local'?); the sites: local"
    )
    assert summary.startswith("pwgen: run ") and " exited 1 after " in summary
    assert "Traceback" not in result.stderr
    _assert_nothing_left_running()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_tears_down_workers(tmp_path: Path, signum: int) -> None:
    workflow = _workflow(
        tmp_path,
        "@bash_app(executors=['local'])\ndef nap():\n    return 'sleep 300'\n\n"
        "future = nap()\nprint('started', flush=True)\nfuture.result()\n",
    )
    proc = subprocess.Popen(
        [str(PWGEN), "run", str(workflow), "--sites", str(LOCAL_SITES)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    assert poll(parsl_processes, 30, interval=0.1), "the workflow never started a worker pool"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted; sites torn down" in stderr
    _assert_nothing_left_running()

"""A block's worker pool started lean (pwgen.executors.pool_launch, pwgen_worker.run_script):
the launch command a generated config gives a provisioned site, and the pool it runs."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from facts_samples import provisioned_facts, provisioned_project
from helpers import run_pwgen
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

from pwgen.executors import lean_worker_pool


def test_the_lean_launch_is_parsls_with_the_envs_python_in_front() -> None:
    command = lean_worker_pool("/home/u/my env/{x}/bin/python")
    assert command.endswith(f" -m pwgen_worker run {DEFAULT_LAUNCH_CMD}")
    # Parsl formats it: braces of the path are escaped, and the shell sees one word.
    filled = command.split(" -m ")[0].format()
    assert shlex.split(filled) == ["/home/u/my env/{x}/bin/python"]
    with pytest.raises(ValueError, match="absolute path"):
        lean_worker_pool("python3")


def test_the_pool_runs_lean_through_pwgen_worker() -> None:
    """Parsl's own worker pool script, run by `python -m pwgen_worker run`: it answers
    (its argparse --help), without the DataFlowKernel's modules imported."""
    probe = (
        "import runpy, sys, json\n"
        "sys.argv = ['pwgen_worker', 'run', 'process_worker_pool.py', '--help']\n"
        "try:\n    runpy.run_module('pwgen_worker', run_name='__main__')\n"
        "except SystemExit as done:\n    code = done.code\n"
        "print(json.dumps([code, 'parsl.dataflow.dflow' in sys.modules,"
        " 'parsl.executors.high_throughput.process_worker_pool' in sys.modules]))\n"
    )
    bin_dir = str(Path(sys.executable).parent)  # where process_worker_pool.py is
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": bin_dir, "HOME": "/nonexistent"},
    )
    assert done.returncode == 0, done.stderr
    assert "--hb_period" in done.stdout  # the pool's own help
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, False, True]


def test_pwgen_worker_refuses_a_command_without_a_script() -> None:
    for args in ([], ["run"], ["pool", "x.py"]):
        done = subprocess.run(
            [sys.executable, "-m", "pwgen_worker", *args], capture_output=True, text=True
        )
        assert done.returncode == 2 and "usage: python -m pwgen_worker run" in done.stderr


def test_a_generated_config_launches_pools_lean_where_pwgen_worker_is(tmp_path: Path) -> None:
    old = provisioned_facts("old")
    old["worker_helpers"] = None  # provisioned before the relay role installed pwgen_worker
    provisioned_project(tmp_path, {"new": provisioned_facts("new"), "old": old})
    done = run_pwgen("config", "-o", "c.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "c.py").read_text()
    new, old = source.split("site_old = ")
    python = provisioned_facts("new")["python"]["path"]
    assert f"launch_cmd=lean_worker_pool(\n        python={python!r}," in new
    assert "launch_cmd" not in old  # Parsl's own launch command


# Records each run of itself (as __main__ or as a spawned child's __mp_main__).
SPAWNER = """
import multiprocessing, os, sys
with open(sys.argv[1], "a") as runs:
    runs.write(__name__ + "\\n")

def work(queue):
    queue.put(os.getpid())

if __name__ == "__main__":
    import pwgen_worker
    if sys.argv[2] == "patched":
        pwgen_worker.spawn_without_main(pwgen_worker.MANAGER_PROCESSES)
    spawn = multiprocessing.get_context("spawn")
    manager = spawn.Manager()  # a server process, as the worker pool starts one
    shared = manager.dict(a=1)
    queue = spawn.Queue()
    worker = spawn.Process(target=work, args=(queue,), name="HTEX-Worker-0")
    worker.start()
    assert queue.get(timeout=30) != os.getpid() and shared["a"] == 1
    worker.join()
    manager.shutdown()
"""


def test_the_pools_manager_process_skips_the_pool_script_and_workers_do_not(
    tmp_path: Path,
) -> None:
    """spawn_without_main: multiprocessing's manager server starts without running the
    main script again (all of Parsl, for the pool); a worker still runs it."""
    script, runs = tmp_path / "spawner.py", tmp_path / "runs"
    script.write_text(SPAWNER)
    for mode, expected in (("plain", 3), ("patched", 2)):
        runs.unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, str(script), str(runs), mode],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        names = runs.read_text().split()
        assert len(names) == expected and names.count("__main__") == 1, (mode, names)

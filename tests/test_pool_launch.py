"""A block's worker pool started lean (pwgen.executors.pool_launch, pwgen_worker.run_script):
the launch command a generated config gives a provisioned site, and the pool it runs."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from facts_samples import provisioned_facts
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
    facts = tmp_path / ".pwgen" / "facts"
    facts.mkdir(parents=True)
    (tmp_path / ".pwgen" / "ssh").mkdir()
    (tmp_path / ".pwgen" / "ssh" / "config").write_text("# written by pwgen provision\n")
    lines = ["sites:"]
    for label in ("new", "old"):
        lines.append(f"  - {{label: {label}, scheduler: slurm, host: h, partition: compute}}")
        record = provisioned_facts(label)
        if label == "old":  # provisioned before the relay role installed pwgen_worker
            record["worker_helpers"] = None
        (facts / f"{label}.json").write_text(json.dumps(record))
    (tmp_path / "sites.yaml").write_text("\n".join(lines) + "\n")
    done = run_pwgen("config", "-o", "c.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "c.py").read_text()
    new, old = source.split("site_old = ")
    python = provisioned_facts("new")["python"]["path"]
    assert f"launch_cmd=lean_worker_pool(\n        python={python!r}," in new
    assert "launch_cmd" not in old  # Parsl's own launch command
